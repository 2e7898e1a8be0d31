"""Packaging for vmcatcher, the HEPiX virtual machine image list subscriber."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'^__version__ = "([^"]+)"', (HERE / "vmcatcher" / "__init__.py").read_text(), re.M
).group(1)

COMMANDS = {
    "vmcatcher_endorser": "vmcatcher.cli.endorser:main",
    "vmcatcher_subscribe": "vmcatcher.cli.subscribe:main",
    "vmcatcher_image": "vmcatcher.cli.image:main",
    "vmcatcher_cache": "vmcatcher.cli.cache:main",
    "vmcatcher_glance": "vmcatcher.cli.glance:main",
    "vmcatcher_check": "vmcatcher.cli.check:main",
    "vmcatcher_eventHndlExpl": "vmcatcher.cli.event_handler_example:main",
}

setup(
    name="vmcatcher",
    version=VERSION,
    description="Subscribe to signed HEPiX virtual machine image lists and cache their images",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["vmcatcher", "vmcatcher.*"]),
    package_data={"vmcatcher.db": ["migrations/*.py", "migrations/versions/*.py"]},
    install_requires=[
        "SQLAlchemy>=2.0,<3",
        "alembic>=1.13",
        "M2Crypto>=0.40",
        "requests>=2.31",
        "python-dateutil>=2.8",
        "tqdm>=4.66",
        "prometheus_client>=0.17",  # the metrics file (vmcatcher.metrics), imported lazily
    ],
    extras_require={
        "postgresql": ["psycopg[binary]>=3.1"],
        "openstack": ["openstacksdk>=1.0"],
        "test": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "pytest-xdist>=3.5",
            "hypothesis>=6.100",
            "cryptography>=42",
            "psycopg2-binary>=2.9",  # the other PostgreSQL driver sites have (tests/postgres)
            "ruff>=0.6",
            "mypy>=1.10",
            "types-requests",
            "types-python-dateutil",
        ],
    },
    entry_points={"console_scripts": [f"{name}={target}" for name, target in COMMANDS.items()]},
    data_files=[
        ("share/doc/vmcatcher", ["README.md", "LICENSE", "logger.conf", "vmcatcher_eventHndlExpl"])
    ],
    classifiers=[
        "License :: OSI Approved :: Apache Software License",
        "Programming Language :: Python :: 3",
        "Topic :: System :: Systems Administration",
    ],
)
