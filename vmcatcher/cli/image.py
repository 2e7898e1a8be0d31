"""``vmcatcher_image``: list images and their state, select them for the cache."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from contextlib import ExitStack

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
from vmcatcher.cli.trust_options import (
    add_trust_options,
    load_configured_trust_store,
    resolve_crl_policy,
)
from vmcatcher.errors import Code, UsageError
from vmcatcher.logsetup import setup_logging
from vmcatcher.settings import DatabaseSettings, resolve_format
from vmcatcher.vocabulary import Caching

log = logging.getLogger("main")

DESCRIPTION = """\
List the images of your subscriptions and choose which ones the cache keeps.

The state column of -l is a bitmap: 0 known, 1 subscribed but not available,
2 available but not subscribed, 3 subscribed and available (it will be cached).

examples:
  vmcatcher_image -l
  vmcatcher_image -a -u <image uuid>     # subscribe: vmcatcher_cache downloads it
  vmcatcher_image -r -u <image uuid>     # unsubscribe: vmcatcher_cache expires it
  vmcatcher_image -i -s <sha512>         # details of the image with this checksum
"""


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("vmcatcher_image", DESCRIPTION)
    add_actions(
        parser.add_argument_group("actions (exactly one)"),
        [
            (("-l", "--list"), "list", "list every image with its state and subscription"),
            (("-a", "--add"), "add", "subscribe the selected images (the cache downloads them)"),
            (
                ("-r", "--remove"),
                "remove",
                "unsubscribe the selected images (the cache expires them)",
            ),
            (("-i", "--info"), "info", "show the selected images"),
            (
                ("-D", "--delete"),
                "delete",
                "forget the selected images until a list names them again",
            ),
        ],
    )
    selection = parser.add_argument_group("selection")
    selection.add_argument(
        "-u", "--uuid", action="append", default=[], metavar="UUID",
        help="select images by identifier (repeatable)",
    )  # fmt: skip
    selection.add_argument(
        "-s", "--sha512", action="append", default=[], metavar="SHA512",
        help="select images by sha512 checksum (repeatable)",
    )  # fmt: skip
    selection.add_argument(
        "-o", "--output", action="append", default=[], metavar="OUTPUTFILE",
        help="write -i output for the selection at the same position to this file",
    )  # fmt: skip
    add_trust_options(parser)
    add_database_options(parser)
    add_format_option(parser)
    add_logging_options(parser)
    parser.add_argument(
        "-L", "--logfile", dest="log_config", metavar="LOGFILE",
        help="same as --log-config (kept for compatibility)",
    )  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args))


def run(args: argparse.Namespace) -> int:
    setup_logging(args.verbose, args.quiet, args.log_config)
    action = single_action(args.actions or [])
    if action in ("info", "add", "remove", "delete") and not (args.uuid or args.sha512):
        raise UsageError(f"Action '{action}' requires an image to be selected.")
    fmt = check_format(resolve_format(args.format))
    if args.uuid and args.sha512:
        raise UsageError("Conflicting selectors.")

    from vmcatcher.services import images
    from vmcatcher.services.database import open_configured_database

    database = open_configured_database(
        DatabaseSettings.resolve(args.database, args.log_sql_info),
        read_only=action in ("list", "info"),
    )
    selector, values = (
        (images.BY_SHA512, args.sha512) if args.sha512 else (images.BY_UUID, args.uuid)
    )
    with database.session() as session:
        if action == "list":
            _list(session, fmt)
        elif action == "add":
            images.set_cache(session, selector, values, Caching.ON)
        elif action == "remove":
            images.set_cache(session, selector, values, Caching.OFF)
        elif action == "delete":
            for value in images.delete(session, selector, values):
                log.warning("Selections '%s' does not match any known images.", value)
        elif action == "info":
            reader = None
            if fmt == "message":
                _, store = load_configured_trust_store(args)
                from vmcatcher.services.trust import payload_reader

                reader = payload_reader(store, resolve_crl_policy(args))
            return _info(session, fmt, selector, values, args.output, reader)
    return 0


def _list(session, fmt: str) -> None:
    from vmcatcher.output import records
    from vmcatcher.output.writer import Writer
    from vmcatcher.services.availability import image_states

    writer = Writer(fmt)
    states = image_states(session)
    if writer.is_json:
        writer.json([records.image_state_json(state) for state in states])
        return
    writer.lines(records.image_state_line(state) for state in states)


def _info(session, fmt, selector, values, outputs, reader) -> int:
    from vmcatcher.output import records
    from vmcatcher.output.writer import selection_writer
    from vmcatcher.services import images

    rc = 0
    with ExitStack() as files:
        for position, value in enumerate(values):
            definitions = images.find(session, selector, value)
            if not definitions:
                log.warning("Selections '%s' does not match any known images.", value)
                continue
            writer = selection_writer(files, fmt, outputs, position, reader)
            for definition in definitions:
                sub = definition.subscription
                if sub is None:
                    log.error("Image '%s' needs an update.", definition.identifier)
                    rc = int(Code.FAILURE)
                    continue
                rows = images.details(session, definition)
                if not rows:
                    log.warning("Subscription '%s' needs an update.", sub.identifier)
                    if fmt == "lines":
                        writer.lines(records.image_without_list_lines(sub, definition))
                    elif fmt == "json":
                        writer.json(records.image_without_list_json(sub, definition))
                    continue
                for row in rows:
                    _print_detail(writer, row)
    return rc


def _print_detail(writer, row) -> None:
    from vmcatcher.output import records

    if writer.format == "lines":
        writer.lines(records.image_detail_lines(row))
    elif writer.format == "json":
        writer.json(records.image_detail_json(row))
    else:
        writer.signed_list(row.subscription.identifier, row.list_instance)
