"""``vmcatcher_subscribe``: subscribe to image lists, update them, inspect them (spec §6)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
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
from vmcatcher.cli.monitoring_options import add_metrics_option, main_recorded
from vmcatcher.cli.trust_options import (
    add_trust_options,
    load_configured_trust_store,
    payload_reader,
    resolve_crl_policy,
)
from vmcatcher.errors import Code, ConfigError, UsageError, VmcatcherError
from vmcatcher.logsetup import setup_logging
from vmcatcher.monitoring import RunCommand, RunStats
from vmcatcher.settings import (
    ENV_FETCH_TIMEOUT,
    ENV_SUB_EVENT,
    resolve,
    resolve_format,
    resolve_seconds,
    transfer_timeout,
)

log = logging.getLogger("main")

TRUST_ANCHORS = ("none", "browser", "igtf")
DEFAULT_READ_TIMEOUT = 60.0
NEWIMAGE_MODES = {"accept": 1, "subscribe": 3, "refuse": 0}

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


def _newimage_mode(args: argparse.Namespace) -> int | None:
    """Refuse wins over subscribe, subscribe over accept (the original's order)."""
    chosen = set(args.newimage or [])
    for name in ("refuse", "subscribe", "accept"):
        if name in chosen:
            return NEWIMAGE_MODES[name]
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


def _decorators(args: argparse.Namespace) -> dict:
    """The subscription settings given on the command line (set beats clear)."""
    found: dict = {}
    if args.uri_trustanchor_set is not None:
        found["trust_anchor"] = args.uri_trustanchor_set.lower()
    if args.uri_username_set is not None:
        found["username"] = args.uri_username_set
    elif args.uri_username_clear:
        found["username"] = ""
    if args.uri_password_set is not None:
        found["password"] = args.uri_password_set
    elif args.uri_password_file is not None:
        found["password"] = _read_password_file(args.uri_password_file)
    elif args.uri_password_clear:
        found["password"] = ""
    mode = _newimage_mode(args)
    if mode is not None:
        found["update_mode"] = mode
    return found


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
    decorators = _decorators(args)
    if not actions and not decorators:
        raise UsageError("No actions selected")
    action = single_action(actions) if actions else None
    fmt = check_format(resolve_format(args.format))
    fetch_timeout = _fetch_timeout(args)

    from vmcatcher.cli.database import open_configured_database

    database = open_configured_database(args)
    events = _event_runner(args)
    if events is not None:
        events.stats = stats
    needs_anchor = (
        action in ("subscribe", "update") or fmt == "message" or ("update_mode" in decorators)
    )
    cert_dir, store = load_configured_trust_store(args) if needs_anchor else (None, None)
    selector, selections = _selection(args, action, decorators)
    if "trust_anchor" in decorators and decorators["trust_anchor"] not in TRUST_ANCHORS:
        log.info("Allowed trust anchors 'none', 'browser', 'igtf'")
        raise UsageError("Invalid trust anchor value")
    crl_policy = resolve_crl_policy(args) if store is not None else None

    from vmcatcher.services.update import UpdateContext

    context = (
        UpdateContext(
            store,
            crl_policy,
            cert_dir,
            on_new_image=_new_image_hook(events),
            fetch_timeout=fetch_timeout,
            stats=stats,
        )
        if store is not None
        else None
    )
    rc = 0
    if action == "subscribe":
        _subscribe(database, args, decorators, context)
        decorators = {}  # applied to the new subscriptions already
    elif action == "list":
        _list(database, fmt)
    elif action == "update":
        from vmcatcher.services.update import update_subscriptions

        rc = update_subscriptions(database.session, context)
    elif action == "delete":
        rc = _delete(database, selector, selections)
    elif action == "info":
        _info(database, fmt, selector, selections, args.output, store, crl_policy)
    elif action == "image_list":
        _info(database, fmt, selector, selections, args.output, store, crl_policy, images=True)
    elif action in ("image_accept", "image_refuse"):
        _accept_refuse(database, action, args, selections)
    _apply_decorators(database, decorators, selector, selections, context)
    return rc


def _selection(args, action, decorators) -> tuple[str, list[str]]:
    needs_selection = action in ("delete", "info", "image_accept", "image_list", "image_refuse")
    if needs_selection and not (args.uuid or args.uri):
        raise UsageError("No subscription selections made.")
    if action != "subscribe" and decorators and not (args.uuid or args.uri):
        raise UsageError("No subscription selections made.")
    if args.uuid and args.uri:
        raise UsageError("Conflicting selectors.")
    from vmcatcher.services.subscriptions import BY_URI, BY_UUID

    return (BY_URI, list(args.uri)) if args.uri else (BY_UUID, list(args.uuid))


def _event_runner(args):
    command = resolve(args.execute, ENV_SUB_EVENT, None)
    if not command:
        return None
    from vmcatcher.events import EventRunner

    return EventRunner(str(command), base_env=dict(os.environ))


def _new_image_hook(events):
    if events is None:
        return None
    return lambda metadata: events.fire("SubscriptionImageNew", metadata)


def _subscribe(database, args, decorators, context) -> None:
    from vmcatcher.fetch import TrustAnchor
    from vmcatcher.services.subscribe import SubscribeOptions, subscribe

    if "trust_anchor" in decorators and decorators["trust_anchor"] not in TRUST_ANCHORS:
        raise UsageError("Invalid trust anchor value")
    options = SubscribeOptions(
        store=context.store,
        crl_policy=context.crl_policy,
        ca_dir=context.ca_dir,
        auto_endorse=args.auto_endorse,
        username=decorators.get("username"),
        password=decorators.get("password"),
        trust_anchor=(
            TrustAnchor.parse(decorators["trust_anchor"]) if "trust_anchor" in decorators else None
        ),
        update_mode=decorators.get("update_mode"),
        fetch_timeout=context.fetch_timeout,
    )
    from vmcatcher.uri import mask_password

    for url in args.subscribe:
        with database.session() as session:
            try:
                subscribe(session, url, options)
            except VmcatcherError as error:
                log.error("%s", error)
                raise VmcatcherError(f"Failed to subscribe to '{mask_password(url)}'") from None


def _list(database, fmt: str) -> None:
    from vmcatcher.output.records import trust_anchor_name
    from vmcatcher.output.writer import Writer
    from vmcatcher.services.subscriptions import all_subscriptions

    writer = Writer(fmt)
    with database.session() as session:
        subs = all_subscriptions(session)
        if writer.is_json:
            writer.json(
                [
                    {"authorised": bool(s.authorised), "identifier": s.identifier, "uri": s.uri}
                    for s in subs
                ]
            )
            return
        writer.lines(
            f"{s.identifier}\t{bool(s.authorised)}\t{trust_anchor_name(s.trust_anchor)}\t{s.uri}"
            for s in subs
        )


def _delete(database, selector: str, selections: list[str]) -> int:
    from vmcatcher.services.subscriptions import delete

    with database.session() as session:
        unmatched = delete(session, selector, selections)
    for value in unmatched:
        log.error("Failed to remove a subscription from '%s'", value)
    return int(Code.FAILURE) if unmatched else 0


def _info(database, fmt, selector, selections, outputs, store, crl_policy, images=False) -> None:
    from vmcatcher.output import records
    from vmcatcher.output.writer import selection_writer
    from vmcatcher.services.queries import latest_list_instance
    from vmcatcher.services.subscriptions import find

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
                continue
            if writer.is_json:
                record = {"Subscription": records.subscription_json(sub)}
                if instance is not None:
                    record["ImageListInstance"] = records.list_instance_json(instance)
                record["ImageDefinition"] = [
                    records.image_definition_json(d) for d in sub.image_definitions
                ]
                writer.json(record)
                continue
            writer.lines(records.subscription_lines(sub))
            if instance is not None:
                writer.lines(records.list_instance_lines(instance))
            for definition in sub.image_definitions:
                writer.lines(records.image_definition_lines(definition))


def _accept_refuse(database, action, args, selections) -> None:
    from vmcatcher.services.subscriptions import image_accept, image_refuse

    with database.session() as session:
        if action == "image_accept":
            image_accept(session, args.image_accept, selections)
        else:
            image_refuse(session, args.image_refuse, selections)


def _apply_decorators(database, decorators, selector, selections, context) -> None:
    if not decorators:
        return
    from vmcatcher.fetch import TrustAnchor
    from vmcatcher.services import subscriptions

    with database.session() as session:
        if "trust_anchor" in decorators:
            anchor = TrustAnchor.parse(decorators["trust_anchor"])
            subscriptions.set_trust_anchor(session, selector, selections, anchor)
        if "username" in decorators:
            subscriptions.set_credential(
                session, selector, selections, "username", decorators["username"]
            )
        if "password" in decorators:
            subscriptions.set_credential(
                session, selector, selections, "password", decorators["password"]
            )
        matched = []
        if "update_mode" in decorators:
            matched = subscriptions.set_update_mode(
                session, selector, selections, decorators["update_mode"]
            )
    if matched and context is not None:
        from vmcatcher.services.update import update_subscriptions

        update_subscriptions(database.session, context, selected=matched)
