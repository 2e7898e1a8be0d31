"""``vmcatcher_subscribe``: subscribe to image lists, update them, inspect them."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

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
from vmcatcher.cli.monitoring_options import add_metrics_option, main_recorded
from vmcatcher.cli.trust_options import (
    add_trust_options,
    load_configured_trust_store,
    resolve_crl_policy,
)
from vmcatcher.errors import Code, ConfigError, UsageError
from vmcatcher.logsetup import setup_logging
from vmcatcher.output import records
from vmcatcher.output.writer import Writer, selection_writer
from vmcatcher.services.database import open_configured_database
from vmcatcher.services.queries import latest_list_instance
from vmcatcher.services.subscribe import SubscribeOptions, subscribe_all
from vmcatcher.services.subscriptions import (
    BY_URI,
    BY_UUID,
    SubscriptionSettings,
    all_subscriptions,
    configure,
    delete,
    find,
    image_accept,
    image_refuse,
    matching_ids,
)
from vmcatcher.services.trust import payload_reader
from vmcatcher.services.update import UpdateContext, new_image_events, update_subscriptions
from vmcatcher.vocabulary import TrustAnchor, UpdateMode

if TYPE_CHECKING:
    from vmcatcher.services.database import Database
    from vmcatcher.services.trust import CrlPolicy, TrustStore
from vmcatcher.monitoring import RunCommand, RunStats
from vmcatcher.settings import (
    ENV_FETCH_TIMEOUT,
    ENV_SUB_EVENT,
    DatabaseSettings,
    resolve,
    resolve_format,
    resolve_seconds,
    transfer_timeout,
)

log = logging.getLogger("main")

DEFAULT_READ_TIMEOUT = 60.0

DESCRIPTION = """\
Subscribe to signed virtual machine image lists and keep them up to date.

examples:
  vmcatcher_subscribe -s https://example.org/image.list -e   # subscribe, trusting its signer
  vmcatcher_subscribe -U                                     # update every subscription
  vmcatcher_subscribe -l                                     # list subscriptions
  vmcatcher_subscribe -i -u <subscription uuid>              # show one subscription

exit codes of -U: 10 download failed, 11 signature not verified, 12 endorser mismatch,
13 signer not authorised, 15 database error, 17 version rollback, 31 identifier mismatch,
32 image refused, 33 created in the future, 34 expired, 37 not JSON, 38 not an image list.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("vmcatcher_subscribe", DESCRIPTION)
    actions = parser.add_argument_group("actions (at most one)")
    actions.add_argument(
        "-s", "--subscribe", action="append", default=[], metavar="INPUTURL",
        help="subscribe to the image list at this URL (repeatable; file://, http://, https://)",
    )  # fmt: skip
    add_actions(
        actions,
        [
            (("-l", "--list"), "list", "list subscriptions"),
            (("-U", "--update"), "update", "download and import every subscription"),
            (("-D", "--delete"), "delete", "delete the selected subscriptions"),
            (("-i", "--info"), "info", "show the selected subscriptions"),
            (("--image-list",), "image_list", "list the selected subscriptions' images"),
        ],
    )
    actions.add_argument(
        "--image-accept", action="append", default=[], metavar="UUID",
        help="pre-register an image UUID for the subscription at the same position (repeatable)",
    )  # fmt: skip
    actions.add_argument(
        "--image-refuse", action="append", default=[], metavar="UUID",
        help="forget an image UUID of the subscription at the same position (repeatable)",
    )  # fmt: skip

    selection = parser.add_argument_group("selection")
    selection.add_argument(
        "-u", "--uuid", action="append", default=[], metavar="UUID",
        help="select subscriptions by identifier (repeatable)",
    )  # fmt: skip
    selection.add_argument(
        "-r", "--uri", action="append", default=[], metavar="URL",
        help="select subscriptions by URI (repeatable)",
    )  # fmt: skip
    selection.add_argument(
        "-o", "--output", action="append", default=[], metavar="OUTPUTFILE",
        help="write the output for the selection at the same position to this file",
    )  # fmt: skip

    settings = parser.add_argument_group("subscription settings (with -s, or on a selection)")
    settings.add_argument(
        "-e", "--auto-endorse", action="store_true",
        help="with -s: add the list's signer as a new endorser when unknown",
    )  # fmt: skip
    settings.add_argument(
        "--uri-trustanchor-set", metavar="TRUST ANCHOR",
        help="how the list's HTTPS server is verified: none, browser (system CAs, the default "
        "for new subscriptions) or igtf (the CA directory)",
    )  # fmt: skip
    settings.add_argument("--uri-username-set", metavar="USERNAME", help="HTTP Basic-auth user")
    settings.add_argument(
        "--uri-username-clear", action="store_true", help="remove the Basic-auth user"
    )
    settings.add_argument(
        "--uri-password-set", metavar="PASSWORD",
        help="HTTP Basic-auth password (visible in 'ps': prefer --uri-password-file)",
    )  # fmt: skip
    settings.add_argument(
        "--uri-password-file", metavar="FILE",
        help="read the Basic-auth password from the first line of FILE ('-' for stdin)",
    )  # fmt: skip
    settings.add_argument(
        "--uri-password-clear", action="store_true", help="remove the Basic-auth password"
    )
    settings.add_argument(
        "--imagelist-newimage-accept", dest="newimage", action="append_const", const="accept",
        help="new image UUIDs in later versions are added, not subscribed",
    )  # fmt: skip
    settings.add_argument(
        "--imagelist-newimage-subscribe", dest="newimage", action="append_const",
        const="subscribe", help="new image UUIDs are added and subscribed (cached)",
    )  # fmt: skip
    settings.add_argument(
        "--imagelist-newimage-refuse", dest="newimage", action="append_const", const="refuse",
        help="new image UUIDs are refused (the default; -U then exits 32)",
    )  # fmt: skip

    parser.add_argument(
        "--fetch-timeout", metavar="SECONDS",
        help="give up on an image list server silent for this long (default 60; connecting: "
        "at most 10); env VMCATCHER_FETCH_TIMEOUT",
    )  # fmt: skip
    parser.add_argument(
        "-x", "--execute", metavar="EVENT",
        help="shell command run for SubscriptionImageNew events; env VMCATCHER_SUB_EVENT",
    )  # fmt: skip
    add_trust_options(parser)
    add_metrics_option(parser)
    add_database_options(parser)
    add_format_option(parser)
    add_logging_options(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if "update" in (args.actions or []):  # -U runs are recorded (docs/monitoring.md)
        return main_recorded(RunCommand.UPDATE, args, run)
    return run_cli(lambda: run(args))


def _actions(args: argparse.Namespace) -> list[str]:
    selected = list(args.actions or [])
    if args.subscribe:
        selected.append("subscribe")
    if args.image_accept:
        selected.append("image_accept")
    if args.image_refuse:
        selected.append("image_refuse")
    return selected


def _newimage_mode(args: argparse.Namespace) -> UpdateMode | None:
    """Refuse wins over subscribe, subscribe over accept (the original's order)."""
    chosen = set(args.newimage or [])
    for name in ("refuse", "subscribe", "accept"):
        if name in chosen:
            return UpdateMode.from_option(name)
    return None


def _read_password_file(path: str) -> str:
    try:
        if path == "-":
            text = sys.stdin.readline()
        else:
            with open(path, encoding="utf-8") as handle:
                text = handle.readline()
    except OSError as error:
        raise ConfigError(f"Cannot read password file '{path}': {error.strerror}") from None
    return text.rstrip("\r\n")


def _settings(args: argparse.Namespace) -> tuple[SubscriptionSettings, str | None]:
    """The subscription settings given on the command line (set beats clear), and the
    trust anchor as typed (checked once the selection is known, as the original did)."""
    username = password = None
    if args.uri_username_set is not None:
        username = args.uri_username_set
    elif args.uri_username_clear:
        username = ""
    if args.uri_password_set is not None:
        password = args.uri_password_set
    elif args.uri_password_file is not None:
        password = _read_password_file(args.uri_password_file)
    elif args.uri_password_clear:
        password = ""
    settings = SubscriptionSettings(
        username=username, password=password, update_mode=_newimage_mode(args)
    )
    return settings, args.uri_trustanchor_set


def _fetch_timeout(args: argparse.Namespace) -> tuple[float, float]:
    """(connect, read) seconds for list downloads: ``--fetch-timeout``/env, default 60."""
    read = resolve_seconds(args.fetch_timeout, ENV_FETCH_TIMEOUT, DEFAULT_READ_TIMEOUT,
                           "fetch timeout")  # fmt: skip
    return transfer_timeout(read)


def run(args: argparse.Namespace, stats: RunStats | None = None) -> int:
    setup_logging(args.verbose, args.quiet, args.log_config)
    if args.format is not None:
        check_format(args.format)
    actions = _actions(args)
    settings, anchor_text = _settings(args)
    if not actions and not settings and anchor_text is None:
        raise UsageError("No actions selected")
    action = single_action(actions) if actions else None
    fmt = check_format(resolve_format(args.format))
    fetch_timeout = _fetch_timeout(args)
    configuring = bool(settings) or anchor_text is not None

    database = open_configured_database(
        DatabaseSettings.resolve(args.database, args.log_sql_info),
        create=action == "subscribe",
        read_only=action in ("list", "info", "image_list") and not configuring,
    )
    on_new_image = new_image_events(resolve(args.execute, ENV_SUB_EVENT, None), stats)
    needs_anchor = (
        action in ("subscribe", "update") or fmt == "message" or settings.update_mode is not None
    )
    cert_dir, store = load_configured_trust_store(args) if needs_anchor else (None, None)
    selector, selections = _selection(args, action, configuring)
    if anchor_text is not None:
        settings = replace(settings, trust_anchor=TrustAnchor.parse(anchor_text))
    crl_policy = resolve_crl_policy(args) if store is not None else None
    context = (
        UpdateContext(
            store,
            crl_policy,
            cert_dir,
            on_new_image=on_new_image,
            fetch_timeout=fetch_timeout,
            stats=stats,
        )
        if store is not None and crl_policy is not None
        else None
    )
    rc = 0
    if action == "subscribe":
        assert context is not None
        _subscribe(database, args, settings, context)
        settings = SubscriptionSettings()  # applied to the new subscriptions already
    elif action == "list":
        _list(database, fmt)
    elif action == "update":
        assert context is not None
        rc = _update(database, context, selector, selections if args.uuid or args.uri else None)
    elif action == "delete":
        rc = _delete(database, selector, selections)
    elif action == "info":
        _info(database, fmt, selector, selections, args.output, store, crl_policy)
    elif action == "image_list":
        _info(database, fmt, selector, selections, args.output, store, crl_policy, images=True)
    elif action in ("image_accept", "image_refuse"):
        _accept_refuse(database, action, args, selections)
    if settings:
        update = None
        if context is not None:
            update = partial(update_subscriptions, database.session, context)
        configure(database.session, selector, selections, settings, update)
    return rc


def _selection(
    args: argparse.Namespace, action: str | None, configuring: bool
) -> tuple[str, list[str]]:
    needs_selection = action in ("delete", "info", "image_accept", "image_list", "image_refuse")
    if needs_selection and not (args.uuid or args.uri):
        raise UsageError("No subscription selections made.")
    if action != "subscribe" and configuring and not (args.uuid or args.uri):
        raise UsageError("No subscription selections made.")
    if args.uuid and args.uri:
        raise UsageError("Conflicting selectors.")
    return (BY_URI, list(args.uri)) if args.uri else (BY_UUID, list(args.uuid))


def _subscribe(
    database: Database,
    args: argparse.Namespace,
    settings: SubscriptionSettings,
    context: UpdateContext,
) -> None:
    options = SubscribeOptions(
        store=context.store,
        crl_policy=context.crl_policy,
        ca_dir=context.ca_dir,
        auto_endorse=args.auto_endorse,
        username=settings.username,
        password=settings.password,
        trust_anchor=settings.trust_anchor,
        update_mode=settings.update_mode,
        fetch_timeout=context.fetch_timeout,
    )
    subscribe_all(database.session, args.subscribe, options)


def _update(
    database: Database, context: UpdateContext, selector: str, selections: list[str] | None
) -> int:
    """``-U``, or ``-U -u/--uri``: only those (docs/commands/vmcatcher_subscribe.md)."""
    selected = None
    if selections is not None:
        with database.session() as session:
            selected = matching_ids(session, selector, selections)
    return update_subscriptions(database.session, context, selected=selected)


def _list(database: Database, fmt: str) -> None:
    writer = Writer(fmt)
    with database.session() as session:
        subs = all_subscriptions(session)
        if writer.is_json:
            writer.json([records.subscription_list_json(sub) for sub in subs])
            return
        writer.lines(records.subscription_list_line(sub) for sub in subs)


def _delete(database: Database, selector: str, selections: list[str]) -> int:
    with database.session() as session:
        unmatched = delete(session, selector, selections)
    for value in unmatched:
        log.error("Failed to remove a subscription from '%s'", value)
    return int(Code.FAILURE) if unmatched else 0


def _info(
    database: Database,
    fmt: str,
    selector: str,
    selections: list[str],
    outputs: list[str],
    store: TrustStore | None,
    crl_policy: CrlPolicy | None,
    images: bool = False,
) -> None:
    reader = payload_reader(store, crl_policy)
    with database.session() as session, ExitStack() as files:
        for position, value in enumerate(selections):
            sub = find(session, selector, value)
            if sub is None:
                log.warning("Selections '%s' does not match any known subscriptions.", value)
                continue
            writer = selection_writer(files, fmt, outputs, position, reader)
            instance = latest_list_instance(session, sub)
            if not images:
                writer.subscription_info(sub, instance)
            elif writer.is_json:
                writer.json(records.subscription_images_json(sub, instance))
            else:
                writer.lines(records.subscription_images_lines(sub, instance))


def _accept_refuse(
    database: Database, action: str, args: argparse.Namespace, selections: list[str]
) -> None:
    with database.session() as session:
        if action == "image_accept":
            image_accept(session, args.image_accept, selections)
        else:
            image_refuse(session, args.image_refuse, selections)
