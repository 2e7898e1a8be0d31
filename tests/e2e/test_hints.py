"""Issue 11, item 9: the hint that explains an error is on the error's line.

Cron mail shows ERROR lines, not INFO: the way out must be in the ERROR itself.
"""

from __future__ import annotations


def errors(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]


def test_unknown_endorser_error_names_auto_endorse(site, pki) -> None:
    published = site.file_list()
    result = site.subscribe("-s", published.url)
    assert result.returncode == 1, result
    first = errors(result)[0]
    assert f"Endorser '{pki.endorser.subject}':'{pki.endorser.issuer}' was not found" in first
    assert "--auto-endorse" in first
    assert "INFO" not in result.stderr


def test_invalid_trust_anchor_lists_the_allowed_values(site) -> None:
    published = site.file_list()
    result = site.subscribe("-s", published.url, "-e", "--uri-trustanchor-set", "grid")
    assert result.returncode == 1, result
    assert errors(result) == [
        "ERROR:main:Invalid trust anchor value 'grid': allowed trust anchors 'none', "
        "'browser', 'igtf'"
    ], result


def test_a_path_instead_of_a_url_suggests_file_url(site) -> None:
    published = site.file_list()
    assert published.path is not None
    result = site.subscribe("-s", str(published.path), "-e")
    assert result.returncode == 1, result
    assert any(
        "unsupported scheme '(none)'" in line and f"use '{published.path.as_uri()}'" in line
        for line in errors(result)
    ), result


def test_a_missing_crl_names_the_file(site, pki, tmp_path) -> None:
    ca_dir = pki.write_ca_dir(tmp_path / "no-crl", root_crl="missing")
    published = site.file_list()
    result = site.subscribe("-s", published.url, "-e", env={"VMCATCHER_DIR_CERT": str(ca_dir)})
    assert result.returncode == 1, result
    assert "<hash>" not in result.stderr
    assert f"no CRL file ({ca_dir / pki.root.hash}.r0) was found" in result.stderr, result
