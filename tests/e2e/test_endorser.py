"""vmcatcher_endorser end to end: the installed command on a fresh database (spec §9, §16).

The database is :func:`tests.support.databases.test_database`: SQLite by
default, a fresh PostgreSQL database in the second pass of ``make test``. The
tests of the default ``sqlite:///vmcatcher.db`` are ``sqlite_only``.
"""

from __future__ import annotations

import json

import pytest

from tests.support.commands import run
from tests.support.databases import test_database
from vmcatcher.db import prepare_database

DN = "/DC=org/DC=example/CN=Jane Doe"
CA = "/DC=org/DC=example/CN=Example CA"


@pytest.fixture
def db(tmp_path):
    return test_database(tmp_path)


@pytest.fixture
def endorser(tmp_path, db):
    def call(*args, env=None):
        env = {"VMCATCHER_RDBMS": db.url, **(env or {})}
        return run("vmcatcher_endorser", *args, cwd=tmp_path, env=env)

    return call


def default_endorser(tmp_path, *args, env=None):
    """The command with no database configured: ``sqlite:///vmcatcher.db`` in the cwd."""
    return run("vmcatcher_endorser", *args, cwd=tmp_path, env=env)


def test_no_arguments_is_an_error(endorser, db):
    result = endorser()
    assert result.returncode == 1, result
    assert "ERROR:main:No actions selected" in result.stderr
    assert not db.exists()


def test_two_actions_are_an_error(endorser):
    result = endorser("-l", "-K")
    assert result.returncode == 1
    assert "More than one action selected." in result.stderr


def test_unknown_option_is_a_usage_error(endorser):
    result = endorser("--no-such-option")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_create_then_list(endorser, db):
    created = endorser("-C", "-e", "E", "--dn", DN, "-I", CA)
    assert created.returncode == 0, created
    assert "Defaulting DB connection" not in endorser("-l", "-v").stderr
    listed = endorser("-l")
    assert listed.returncode == 0
    assert listed.stdout == f"'E'\t'{DN}'\t'{CA}'\n"
    assert db.sql("select identifier from endorser") == [("E",)]


@pytest.mark.sqlite_only
def test_default_database_is_vmcatcher_db_in_the_cwd(tmp_path):
    created = default_endorser(tmp_path, "-C", "-e", "E", "--dn", DN, "-I", CA)
    assert created.returncode == 0, created
    listed = default_endorser(tmp_path, "-l", "-v")
    assert "Defaulting DB connection to 'sqlite:///vmcatcher.db'" in listed.stderr
    assert listed.stdout == f"'E'\t'{DN}'\t'{CA}'\n"
    assert (tmp_path / "vmcatcher.db").is_file()


def test_same_dn_for_new_endorser_exits_12_and_leaves_nothing(endorser, db):
    assert endorser("-C", "-e", "E", "--dn", DN, "-I", CA).returncode == 0
    again = endorser("-C", "-e", "E2", "--dn", DN, "-I", CA)
    assert again.returncode == 12, again
    assert "Database integrity error while adding" in again.stderr
    assert "Traceback" not in again.stderr
    assert db.sql("select identifier from endorser") == [("E",)]
    assert endorser("-l").stdout == f"'E'\t'{DN}'\t'{CA}'\n"


def test_same_dn_for_existing_endorser_also_fails_and_changes_nothing(endorser, db):
    other = "/DC=org/CN=Other"
    assert endorser("-C", "-e", "E", "--dn", DN, "-I", CA).returncode == 0
    assert endorser("-C", "-e", "F", "--dn", other, "-I", CA).returncode == 0
    again = endorser("-C", "-e", "F", "--dn", "/DC=org/CN=New", "--dn", DN, "-I", CA)
    assert again.returncode == 12
    assert db.sql('select hv_dn from "endorserPrincible" order by id') == [(DN,), (other,)]


def test_one_issuer_serves_several_subjects(endorser):
    assert endorser("-C", "-e", "E", "--dn", "/CN=a", "--dn", "/CN=b", "-I", CA).returncode == 0
    assert endorser("-l").stdout == f"'E'\t'/CN=a'\t'{CA}'\n'E'\t'/CN=b'\t'{CA}'\n"


def test_more_issuers_than_subjects_fails(endorser, tmp_path):
    result = endorser("-C", "-e", "E", "--dn", "/CN=a", "-I", "/CN=x", "-I", "/CN=y")
    assert result.returncode == 1
    assert "Cant add issuer credentials, without a subject." in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-C", "--dn", DN, "-I", CA], "No endorsers selected."),
        (["-k", "-e", "E"], "No subscriptions selected."),
        (["-C", "-e", "E", "-I", CA], "No subjects selected."),
        (["-C", "-e", "E", "--dn", DN], "No issuers selected."),
        (["-C", "-e", "E", "-e", "F", "--dn", DN, "-I", CA], "More than one endorser cannot"),
        (["-l", "-f", "xml"], "Invalid format 'xml' allowed formats are"),
    ],
)
def test_validation_messages(endorser, args, message):
    result = endorser(*args)
    assert result.returncode == 1, result
    assert message in result.stderr


def test_invalid_format_from_env_names_the_value(endorser):
    result = endorser("-l", env={"VMCATCHER_OUTPUT_FORMAT": "yaml"})
    assert result.returncode == 1
    assert "Invalid format 'yaml'" in result.stderr


def test_deprecated_subject_option(endorser):
    result = endorser("-C", "-e", "E", "-S", DN, "-I", CA, "-v")
    assert result.returncode == 0
    assert "depricated in favour of '--dn'" in result.stderr


def test_list_json(endorser):
    endorser("-C", "-e", "E", "--dn", DN, "-I", CA)
    out = endorser("-l", "-f", "json").stdout
    assert not out.endswith("\n")
    assert json.loads(out) == [{"endorser": "E", "princibles": [{"issuer": CA, "subject": DN}]}]
    assert out == json.dumps(json.loads(out), sort_keys=True, indent=4)


def test_delete(endorser, db):
    endorser("-C", "-e", "E", "--dn", DN, "-I", CA)
    missing = endorser("-D", "-e", "nobody")
    assert missing.returncode == 0
    assert "Failed to find endorser 'nobody'." in missing.stderr
    assert endorser("-D", "-e", "E").returncode == 0
    assert endorser("-l").stdout == ""
    assert db.count("endorserPrincible") == 0


def test_link_unknown_subscription_warns(endorser):
    endorser("-C", "-e", "E", "--dn", DN, "-I", CA)
    result = endorser("-k", "-e", "E", "-s", "no-such-subscription")
    assert result.returncode == 0
    assert "subscription not available." in result.stderr
    unlinked = endorser("-u", "-e", "E", "-s", "no-such-subscription")
    assert "endorser and subscription are not linked." in unlinked.stderr


def test_info_lines_and_unknown(endorser):
    endorser("-C", "-e", "E", "--dn", DN, "-I", CA)
    info = endorser("-i", "-e", "E")
    assert info.returncode == 0
    assert info.stdout == f"endorser.dc:identifier=E\nendorser.hv:dn={DN}\nendorser.hv:ca={CA}\n"
    unknown = endorser("-i", "-e", "X")
    assert unknown.returncode == 1
    assert "endorser 'X' not found" in unknown.stderr


def test_log_config_missing_names_the_env_path(endorser):
    result = endorser("-l", env={"VMCATCHER_LOG_CONF": "/nonexistent/logger.conf"})
    assert result.returncode == 1
    assert "Logfile configuration file '/nonexistent/logger.conf' was not found." in result.stderr


@pytest.mark.sqlite_only
def test_log_config_file_is_used(tmp_path):
    conf = tmp_path / "log.conf"
    conf.write_text(
        "[loggers]\nkeys=root\n[handlers]\nkeys=h\n[formatters]\nkeys=f\n"
        "[logger_root]\nlevel=INFO\nhandlers=h\n"
        "[handler_h]\nclass=StreamHandler\nformatter=f\nargs=(sys.stderr,)\n"
        "[formatter_f]\nformat=CUSTOM %(levelname)s %(message)s\n"
    )
    prepare_database(f"sqlite:///{tmp_path / 'vmcatcher.db'}").close()
    result = default_endorser(tmp_path, "-l", "--log-config", str(conf))
    assert result.returncode == 0
    assert "CUSTOM INFO Defaulting DB connection" in result.stderr


def test_help_documents_every_option(endorser):
    out = endorser("-h").stdout
    for option in ["--list", "--database", "--subscription_uuid", "--endorser_uuid", "--create",
                   "--dn", "--issuer", "--subject", "--delete", "--links", "--link", "--unlink",
                   "--info", "--format", "--verbose", "--quiet", "--log-config", "--log-sql-info",
                   "--version"]:  # fmt: skip
        assert option in out


def test_bad_database_url_is_one_line(endorser):
    result = endorser("-l", "-d", "nosuchdialect://user:secret@host/db")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "secret" not in result.stderr


# --- issue 11, item 7: DNs as OpenSSL 3 prints them, and empty values ------------------


def test_openssl3_comma_form_is_stored_in_slash_form_and_matches(site, pki) -> None:
    """``openssl x509 -noout -subject`` prints ``DC = org, ..., CN = ...`` by default."""

    def comma(dn: str) -> str:
        return ", ".join(part.replace("=", " = ", 1) for part in dn.strip("/").split("/"))

    signer = pki.endorser
    created = site.endorser("-C", "-e", "QA", "--dn", comma(signer.subject),
                            "-I", comma(signer.issuer))  # fmt: skip
    assert created.returncode == 0, created
    assert site.sql('SELECT hv_dn, hv_ca FROM "endorserPrincible"') == [
        (signer.subject, signer.issuer)
    ]
    published = site.file_list()
    subscribed = site.subscribe("-s", published.url)  # no -e: the endorser must match
    assert subscribed.returncode == 0, subscribed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-e", "", "--dn", DN, "-I", CA], "Empty endorser identifier (-e)"),
        (["-e", "E", "--dn", "", "-I", CA], "Invalid subject (--dn) DN '(empty)'"),
        (["-e", "E", "--dn", DN, "-I", ""], "Invalid issuer (-I) DN '(empty)'"),
        (["-e", "E", "--dn", "Jane Doe", "-I", CA], "Invalid subject (--dn) DN 'Jane Doe'"),
        (["-e", "E", "--dn", "DC=org/CN=Jane", "-I", CA], "give it as '/DC=org/CN=Name'"),
    ],
)
def test_empty_or_unusable_endorser_values_are_refused(site, args, message) -> None:
    before = site.dump()
    result = site.endorser("-C", *args)
    assert result.returncode == 1, result
    [line] = result.stderr.splitlines()
    assert line.startswith("ERROR:main:") and message in line, result
    assert site.dump() == before
