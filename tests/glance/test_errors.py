"""Failures of the cloud end as one ERROR line and exit 1, never a traceback."""

from __future__ import annotations

from tests.glance.conftest import GlanceSite
from tests.support.glance import free_port


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr
    return [line for line in stderr.splitlines() if line.strip()]


def test_unknown_cloud_is_one_line(gsite: GlanceSite) -> None:
    result = gsite.run("--os-cloud", "nosuchcloud", expect=1)
    (line,) = error_lines(result.stderr)
    assert line.startswith("ERROR") and "Cannot connect to the image service" in line


def test_glance_down_is_one_line(gsite: GlanceSite) -> None:
    path = gsite.site.root / "clouds.yaml"
    path.write_text(path.read_text() + "  down:\n    auth_type: none\n    auth:\n"
                    f"      endpoint: http://127.0.0.1:{free_port()}\n")  # fmt: skip
    result = gsite.run("--os-cloud", "down", expect=1)
    (line,) = error_lines(result.stderr)
    assert line.startswith("ERROR") and "image service" in line


def test_bad_disk_format_is_refused(gsite: GlanceSite) -> None:
    result = gsite.run("--disk-format", "iso", expect=1)
    (line,) = error_lines(result.stderr)
    assert "Invalid disk format 'iso'" in line
