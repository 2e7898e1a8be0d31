"""``vmcatcher_endorser``: manage who may sign which image list."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from vmcatcher.cli.common import (
    add_actions,
    add_database_options,
    add_format_option,
    add_logging_options,
    check_format,
    new_parser,
    run_cli,
    single_action,
)
from vmcatcher.errors import UsageError
from vmcatcher.logsetup import setup_logging
from vmcatcher.settings import DatabaseSettings, resolve_format

log = logging.getLogger("main")

DESCRIPTION = """\
Manage endorsers: the x.509 identities (subject DN + issuer DN) allowed to sign
image lists, and which subscriptions each endorser may sign.

examples:
  vmcatcher_endorser -C -e 'Jane Doe' --dn '/DC=org/CN=Jane Doe' -I '/DC=org/CN=CA'
  vmcatcher_endorser -l
  vmcatcher_endorser -k -e 'Jane Doe' -s <subscription uuid>
"""


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("vmcatcher_endorser", DESCRIPTION)
    add_actions(
        parser.add_argument_group("actions (exactly one)"),
        [
            (("-l", "--list"), "list", "list every endorser credential"),
            (("-C", "--create"), "create", "create an endorser (-e) with credentials (--dn, -I)"),
            (("-D", "--delete"), "delete",
             "delete endorsers (-e), with the lists imported under their signature"),
            (("-K", "--links"), "links", "list endorser to subscription links"),
            (("-k", "--link"), "link",
             "allow endorser -e to sign subscription -s (paired by position)"),
            (("-u", "--unlink"), "unlink",
             "withdraw endorser -e from subscription -s (paired by position)"),
            (("-i", "--info"), "info",
             "show endorsers (-e) with their credentials and subscriptions"),
        ],
    )  # fmt: skip
    selection = parser.add_argument_group("selection")
    selection.add_argument(
        "-e", "--endorser_uuid", action="append", default=[], metavar="UUID",
        help="endorser identifier (repeatable)",
    )  # fmt: skip
    selection.add_argument(
        "-s", "--subscription_uuid", action="append", default=[], metavar="UUID",
        help="subscription identifier for --link/--unlink (repeatable)",
    )  # fmt: skip
    selection.add_argument(
        "--dn", action="append", default=[], metavar="SUBJECT",
        help="subject DN of a credential, e.g. '/DC=ch/DC=cern/CN=Jane' (repeatable)",
    )  # fmt: skip
    selection.add_argument(
        "-S", "--subject", action="append", default=[], metavar="SUBJECT",
        help="deprecated spelling of --dn (ignored when --dn is given)",
    )  # fmt: skip
    selection.add_argument(
        "-I", "--issuer", action="append", default=[], metavar="ISSUER",
        help="issuer (CA) DN of a credential (repeatable; one issuer serves all subjects)",
    )  # fmt: skip
    add_database_options(parser)
    add_format_option(parser)
    add_logging_options(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args))


def validate(args: argparse.Namespace) -> tuple[str, str, list[str]]:
    """Check the command line in the original's order; return action, format, subjects."""
    action = single_action(args.actions or [])
    if action in ("create", "delete", "link", "unlink", "info") and not args.endorser_uuid:
        raise UsageError("No endorsers selected.")
    if action in ("link", "unlink") and not args.subscription_uuid:
        raise UsageError("No subscriptions selected.")
    if args.subject:
        log.info("Option '--subject' and '-S' are depricated in favour of '--dn'.")
    subjects = args.dn or args.subject
    if action == "create":
        if not subjects:
            raise UsageError("No subjects selected.")
        if not args.issuer:
            raise UsageError("No issuers selected.")
    fmt = check_format(resolve_format(args.format))
    if action == "create" and len(args.endorser_uuid) > 1:
        raise UsageError("More than one endorser cannot be created at a time.")
    if action == "create":
        # Before the database is opened (and perhaps created): refuse what cannot match.
        from vmcatcher.services.endorsers import checked_credentials

        subjects, args.issuer = checked_credentials(args.endorser_uuid[0], subjects, args.issuer)
    return action, fmt, subjects


def run(args: argparse.Namespace) -> int:
    setup_logging(args.verbose, args.quiet, args.log_config)
    action, fmt, subjects = validate(args)

    from vmcatcher.output.writer import Writer
    from vmcatcher.services import endorsers
    from vmcatcher.services.database import open_configured_database

    database = open_configured_database(
        DatabaseSettings.resolve(args.database, args.log_sql_info),
        create=action == "create",
        read_only=action in ("list", "links", "info"),
    )
    writer = Writer(fmt)
    with database.session() as session:
        if action == "create":
            endorsers.create_endorser(session, args.endorser_uuid[0], subjects, args.issuer)
        elif action == "delete":
            endorsers.delete_endorsers(session, args.endorser_uuid)
        elif action == "link":
            endorsers.link(session, args.endorser_uuid, args.subscription_uuid)
        elif action == "unlink":
            endorsers.unlink(session, args.endorser_uuid, args.subscription_uuid)
        elif action == "list":
            _print_list(writer, endorsers.principals(session))
        elif action == "links":
            _print_links(writer, endorsers.links(session))
        elif action == "info":
            return _print_info(session, writer, args.endorser_uuid)
    return 0


def _print_list(writer, pairs) -> None:
    from vmcatcher.output import records

    if writer.is_json:
        writer.json(records.endorser_principals_json(pairs))
        return
    writer.lines(
        records.endorser_principal_line(endorser, principal) for endorser, principal in pairs
    )


def _print_links(writer, rows) -> None:
    from vmcatcher.output import records

    if writer.is_json:
        writer.json([records.endorser_link_json(row) for row in rows])
        return
    writer.lines(records.endorser_link_line(row) for row in rows)


def _print_info(session, writer, identifiers: Sequence[str]) -> int:
    from vmcatcher.output import records
    from vmcatcher.services import endorsers
    from vmcatcher.services.queries import latest_list_instance

    rc = 0
    for identifier in identifiers:
        endorser = endorsers.find_endorser(session, identifier)
        if endorser is None:
            log.error("endorser '%s' not found", identifier)
            rc = 1
            continue
        subscriptions = endorsers.linked_subscriptions(session, endorser)
        if writer.is_json:
            if not endorser.principals:
                log.warning("endorser '%s' has no princibles", identifier)
                continue
            writer.json(records.endorser_info_json(endorser, subscriptions))
            continue
        writer.lines(records.endorser_identity_lines(endorser))
        if not endorser.principals:
            log.warning("endorser '%s' has no princibles", identifier)
            continue
        for principal in endorser.principals:
            writer.lines(records.endorser_credential_lines(principal))
        for sub in subscriptions:
            writer.subscription_info(sub, latest_list_instance(session, sub))
    return rc
