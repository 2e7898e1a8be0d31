"""``vmcatcher_glance``: publish the verified, selected cache to OpenStack Glance."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from vmcatcher.cli.common import add_database_options, add_logging_options, new_parser, run_cli
from vmcatcher.errors import UsageError
from vmcatcher.logsetup import setup_logging
from vmcatcher.settings import resolve, resolve_database, resolve_seconds

log = logging.getLogger("main")

ENV_TAG = "VMCATCHER_GLANCE_TAG"
ENV_NAME_PREFIX = "VMCATCHER_GLANCE_NAME_PREFIX"
ENV_VISIBILITY = "VMCATCHER_GLANCE_VISIBILITY"
ENV_PROJECTS = "VMCATCHER_GLANCE_PROJECTS"
ENV_DISK_FORMAT = "VMCATCHER_GLANCE_DISK_FORMAT"
ENV_WORK_DIR = "VMCATCHER_GLANCE_WORK_DIR"
ENV_CONVERT_TIMEOUT = "VMCATCHER_GLANCE_CONVERT_TIMEOUT"
VISIBILITIES = ("private", "shared", "community", "public")
DISK_FORMATS = ("raw", "qcow2", "vmdk", "vdi", "vhd", "vhdx")

DESCRIPTION = """\
Publish the cached images to OpenStack Glance, run after vmcatcher_cache: every
image selected for caching, available and verified in the cache is uploaded once
(tagged, with vmcatcher_event_* properties); new versions replace old ones;
images no longer wanted are deleted (or, when Glance refuses, deactivated and
made private, and retried next run). Authentication: clouds.yaml, OS_CLOUD or
--os-cloud. See docs/glance.md.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("vmcatcher_glance", DESCRIPTION)
    cloud = parser.add_argument_group("Glance")
    cloud.add_argument(
        "--os-cloud", metavar="CLOUD",
        help="cloud name in clouds.yaml; default: OS_CLOUD or the OS_* variables",
    )  # fmt: skip
    cloud.add_argument(
        "--tag", metavar="TAG",
        help=f"tag marking the images this command manages; env {ENV_TAG}; default vmcatcher",
    )  # fmt: skip
    cloud.add_argument(
        "--name-prefix", metavar="PREFIX",
        help=f"prefix of image names (the rest is dc:title); env {ENV_NAME_PREFIX}",
    )  # fmt: skip
    cloud.add_argument(
        "--visibility", metavar="VISIBILITY",
        help=f"one of {', '.join(VISIBILITIES)}; env {ENV_VISIBILITY}; default private",
    )  # fmt: skip
    cloud.add_argument(
        "--projects", metavar="FILE",
        help="JSON file mapping subscription UUIDs or VOs to projects (shared images); "
        f"env {ENV_PROJECTS}",
    )  # fmt: skip
    cloud.add_argument(
        "--disk-format", metavar="FORMAT",
        help=f"convert images to this format ({', '.join(DISK_FORMATS)}); "
        f"env {ENV_DISK_FORMAT}; default: upload as found (an OVA's disk: qcow2)",
    )  # fmt: skip
    cloud.add_argument(
        "--work-dir", metavar="DIR",
        help=f"where conversions happen; env {ENV_WORK_DIR}; default <cache>/.vmcatcher-glance",
    )  # fmt: skip
    cloud.add_argument(
        "--convert-timeout", metavar="SECONDS",
        help=f"give up on one conversion after this long; env {ENV_CONVERT_TIMEOUT}; "
        "default 3600",
    )  # fmt: skip
    cloud.add_argument(
        "-n", "--dry-run", action="store_true",
        help="print the plan and change nothing",
    )  # fmt: skip
    dirs = parser.add_argument_group("cache (as for vmcatcher_cache)")
    dirs.add_argument(
        "-C",
        "--cache-dir",
        metavar="DIR_CACHE",
        help="cached images; env VMCATCHER_CACHE_DIR_CACHE; default ./cache",
    )
    dirs.add_argument(
        "-p",
        "--partial-dir",
        metavar="DIR_PARTIAL",
        help="env VMCATCHER_CACHE_DIR_DOWNLOAD; default <cache>/partial",
    )
    dirs.add_argument(
        "-e",
        "--expired-dir",
        metavar="DIR_EXPIRE",
        help="env VMCATCHER_CACHE_DIR_EXPIRE; default <cache>/expired",
    )
    dirs.add_argument(
        "--wait", nargs="?", type=float, const=-1.0, metavar="SECONDS",
        help="if vmcatcher_cache holds the cache lock, wait for it (forever, or SECONDS)",
    )  # fmt: skip
    add_database_options(parser)
    add_logging_options(parser)
    return parser  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args))


def _choice(value: object, allowed: Sequence[str], what: str) -> str:
    text = str(value)
    if text not in allowed:
        raise UsageError(f"Invalid {what} '{text}': one of {', '.join(allowed)}")
    return text


def run(args: argparse.Namespace) -> int:
    setup_logging(args.verbose, args.quiet, args.log_config)
    from vmcatcher.cli.cache import resolve_directories
    from vmcatcher.services import glance

    visibility = _choice(resolve(args.visibility, ENV_VISIBILITY, "private"), VISIBILITIES,
                         "visibility")  # fmt: skip
    disk_format = resolve(args.disk_format, ENV_DISK_FORMAT, None)
    if disk_format is not None:
        disk_format = _choice(disk_format, DISK_FORMATS, "disk format")
    tag = str(resolve(args.tag, ENV_TAG, glance.DEFAULT_TAG))
    if not tag or len(tag) > 255:
        raise UsageError(f"Invalid tag '{tag}'")
    projects_file = resolve(args.projects, ENV_PROJECTS, None)
    work_dir = resolve(args.work_dir, ENV_WORK_DIR, None)
    options = glance.GlanceOptions(
        cloud=args.os_cloud,
        tag=tag,
        name_prefix=str(resolve(args.name_prefix, ENV_NAME_PREFIX, "")),
        visibility=glance.Visibility(visibility),
        projects=glance.load_project_map(projects_file) if projects_file else glance.ProjectMap(),
        disk_format=disk_format,
        work_dir=Path(str(work_dir)).absolute() if work_dir else None,
        convert_timeout=resolve_seconds(args.convert_timeout, ENV_CONVERT_TIMEOUT,
                                        glance.DEFAULT_CONVERT_TIMEOUT, "conversion timeout"),
        dry_run=args.dry_run,
        progress=True,
        wait=False if args.wait is None else (True if args.wait < 0 else args.wait),
    )  # fmt: skip
    report = glance.publish(resolve_directories(args), resolve_database(args.database), options,
                            echo=args.log_sql_info)  # fmt: skip
    if args.dry_run:
        for action in report.actions:
            print(action.describe())
        if not report.actions:
            print("nothing to do")
    return report.exit_code
