"""``vmcatcher_cache``: download, verify and expire cached images."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence

from vmcatcher.cli.common import add_database_options, add_logging_options, new_parser
from vmcatcher.cli.monitoring_options import add_metrics_option, main_recorded
from vmcatcher.cli.progress import TerminalProgress
from vmcatcher.logsetup import setup_logging
from vmcatcher.monitoring import RunCommand, RunStats
from vmcatcher.services.cache import CacheSettings, run_cache
from vmcatcher.settings import (
    ENV_CACHE_ACTION_CHECK,
    ENV_CACHE_ACTION_DOWNLOAD,
    ENV_CACHE_ACTION_EXPIRE,
    ENV_CACHE_DIR_CACHE,
    ENV_CACHE_DIR_DOWNLOAD,
    ENV_CACHE_DIR_EXPIRE,
    ENV_CACHE_EVENT,
    DatabaseSettings,
    env_flag,
    parse_number,
    resolve,
    resolve_cert_dir,
    resolve_number,
    resolve_seconds,
    transfer_timeout,
)
from vmcatcher.vocabulary import CacheAction

log = logging.getLogger("main")

ENV_PARALLEL = "VMCATCHER_CACHE_PARALLEL"
ENV_EVENT_TIMEOUT = "VMCATCHER_EVENT_TIMEOUT"
ENV_DOWNLOAD_TIMEOUT = "VMCATCHER_DOWNLOAD_TIMEOUT"
DEFAULT_DOWNLOAD_TIMEOUT = 60.0
DEFAULT_PARALLEL = 2

DESCRIPTION = """\
Keep the local image cache equal to the images you subscribed to: expire what is
no longer endorsed, re-check cached images (-s), download and verify new ones,
and run an event handler (-x) for every change.

default actions: expire and download. Directories must exist:
  mkdir -p cache/partial cache/expired

events: ProcessPrefix, ProcessPostfix, AvailablePrefix, AvailablePostfix,
ExpirePrefix, ExpirePostfix (VMCATCHER_EVENT_TYPE and VMCATCHER_EVENT_* variables).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("vmcatcher_cache", DESCRIPTION)
    actions = parser.add_argument_group("actions (default: expire and download)")
    actions.add_argument(
        "-E", "--expire", action="store_true",
        help="expire images no longer subscribed or available; env VMCATCHER_CACHE_ACTION_EXPIRE=1",
    )  # fmt: skip
    actions.add_argument(
        "-s", "--sha512", action="store_true",
        help="re-hash cached images; corrupt ones are expired; env VMCATCHER_CACHE_ACTION_CHECK=1",
    )  # fmt: skip
    actions.add_argument(
        "-D", "--download", action="store_true",
        help="download subscribed images (implies expire); env VMCATCHER_CACHE_ACTION_DOWNLOAD=1",
    )  # fmt: skip
    dirs = parser.add_argument_group("directories (must exist)")
    dirs.add_argument(
        "-C", "--cache-dir", metavar="DIR_CACHE",
        help="cached images; env VMCATCHER_CACHE_DIR_CACHE; default ./cache",
    )  # fmt: skip
    dirs.add_argument(
        "-p", "--partial-dir", metavar="DIR_PARTIAL",
        help="downloads in progress; env VMCATCHER_CACHE_DIR_DOWNLOAD; default <cache>/partial",
    )  # fmt: skip
    dirs.add_argument(
        "-e", "--expired-dir", metavar="DIR_EXPIRE",
        help="expired images; env VMCATCHER_CACHE_DIR_EXPIRE; default <cache>/expired",
    )  # fmt: skip
    actions.add_argument(
        "--retry", action="append", default=[], metavar="UUID",
        help="download image UUID again now even if it failed 5 times for this list version "
        "(repeatable)",
    )  # fmt: skip
    actions.add_argument(
        "--allow-empty-database", action="store_true",
        help="expire even when the database holds no subscription at all (otherwise refused "
        "while the cache holds images: it is probably the wrong database)",
    )  # fmt: skip
    dirs.add_argument(
        "--expired-max-count", metavar="N",
        help="keep at most N files in the expired directory (oldest removed first; 0: none)",
    )  # fmt: skip
    dirs.add_argument(
        "--expired-max-age", metavar="DAYS",
        help="remove expired files older than DAYS days (0: all)",
    )  # fmt: skip
    events = parser.add_argument_group("events")
    events.add_argument(
        "-x", "--execute", metavar="EVENT",
        help="shell command run for every event; env VMCATCHER_CACHE_EVENT",
    )  # fmt: skip
    events.add_argument(
        "--event-timeout", metavar="SECONDS",
        help="kill a handler (and its children) after this long; env VMCATCHER_EVENT_TIMEOUT; "
        "default 10",
    )  # fmt: skip
    transfer = parser.add_argument_group("downloads")
    transfer.add_argument(
        "--parallel", metavar="N",
        help=f"download up to N images at once; env {ENV_PARALLEL}; default {DEFAULT_PARALLEL}",
    )  # fmt: skip
    transfer.add_argument(
        "--timeout", metavar="SECONDS",
        help="give up on an image server silent for this long (default 60; connecting: at "
        f"most 10); env {ENV_DOWNLOAD_TIMEOUT}",
    )  # fmt: skip
    transfer.add_argument(
        "-c", "--cert-dir", metavar="INPUTDIR",
        help="CA directory trusted for image servers besides the system CAs; "
        "env VMCATCHER_DIR_CERT; default /etc/grid-security/certificates/",
    )  # fmt: skip
    transfer.add_argument(
        "--insecure", action="store_true",
        help="do not verify image servers' TLS certificates (the sha512 is still checked)",
    )  # fmt: skip
    transfer.add_argument(
        "--allow-file-uri", action="store_true",
        help="allow images with file:// URLs (off: a list could copy local files)",
    )  # fmt: skip
    transfer.add_argument(
        "--wait", nargs="?", const="forever", metavar="SECONDS",
        help="if another vmcatcher_cache runs on this cache, wait for it (forever, or SECONDS) "
        "instead of exiting",
    )  # fmt: skip
    add_metrics_option(parser)
    add_database_options(parser)
    add_logging_options(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return main_recorded(RunCommand.CACHE, args, run)


def resolve_actions(args: argparse.Namespace) -> frozenset[CacheAction]:
    """Union of the flags and VMCATCHER_CACHE_ACTION_*, with the original's defaults."""
    actions = set()
    if args.expire or env_flag(ENV_CACHE_ACTION_EXPIRE):
        actions.add(CacheAction.EXPIRE)
    if args.sha512 or env_flag(ENV_CACHE_ACTION_CHECK):
        actions.add(CacheAction.CHECK)
    if args.download or env_flag(ENV_CACHE_ACTION_DOWNLOAD):
        actions.add(CacheAction.DOWNLOAD)
    if not actions:
        log.info("Defaulting actions as 'expire', and 'download'.")
        actions = {CacheAction.EXPIRE, CacheAction.DOWNLOAD}
    elif CacheAction.DOWNLOAD in actions and CacheAction.EXPIRE not in actions:
        log.info("Defaulting action 'expire', as 'download' is requested.")
        actions.add(CacheAction.EXPIRE)
    return frozenset(actions)


def resolve_directories(args: argparse.Namespace) -> tuple[str, str, str]:
    cache = str(resolve(args.cache_dir, ENV_CACHE_DIR_CACHE, "cache",
                        default_message="Defaulting cache-dir to '%s'."))  # fmt: skip
    partial = str(resolve(args.partial_dir, ENV_CACHE_DIR_DOWNLOAD, os.path.join(cache, "partial"),
                          default_message="Defaulting partial-dir to '%s'."))  # fmt: skip
    expired = str(resolve(args.expired_dir, ENV_CACHE_DIR_EXPIRE, os.path.join(cache, "expired"),
                          default_message="Defaulting expired-dir to '%s'."))  # fmt: skip
    return cache, partial, expired


def resolve_parallel(args: argparse.Namespace) -> int:
    """How many images download at once: ``--parallel``/env, default 2 (a 2-core host)."""
    count = resolve_number(args.parallel, ENV_PARALLEL, DEFAULT_PARALLEL, "parallel downloads",
                           whole=True)  # fmt: skip
    return int(count or DEFAULT_PARALLEL)


def resolve_pruning(args: argparse.Namespace) -> tuple[int | None, float | None]:
    """``--expired-max-count`` and ``--expired-max-age``: 0 is allowed and means "keep none"."""
    count = resolve_number(args.expired_max_count, None, None, "expired max count", whole=True,
                           zero=True)  # fmt: skip
    age = resolve_number(args.expired_max_age, None, None, "expired max age", zero=True,
                         unit="days")  # fmt: skip
    return (None if count is None else int(count)), age


def resolve_wait(args: argparse.Namespace) -> bool | float:
    """``--wait``: False (absent), True (no value: forever) or a number of seconds."""
    if args.wait is None:
        return False
    if args.wait == "forever":
        return True
    return parse_number(args.wait, "wait", zero=True, unit="seconds")


def resolve_download_timeout(args: argparse.Namespace) -> tuple[float, float]:
    """(connect, read) seconds for image downloads: ``--timeout``/env, default 60."""
    read = resolve_seconds(args.timeout, ENV_DOWNLOAD_TIMEOUT, DEFAULT_DOWNLOAD_TIMEOUT,
                           "download timeout")  # fmt: skip
    return transfer_timeout(read)


def run(args: argparse.Namespace, stats: RunStats | None = None) -> int:
    setup_logging(args.verbose, args.quiet, args.log_config)
    max_count, max_age = resolve_pruning(args)
    event_timeout = resolve_seconds(args.event_timeout, ENV_EVENT_TIMEOUT, 10.0, "event timeout")
    settings = CacheSettings(
        actions=resolve_actions(args),
        directories=resolve_directories(args),
        parallel=resolve_parallel(args),
        expired_max_count=max_count,
        expired_max_age_days=max_age,
        wait=resolve_wait(args),
        event_timeout=event_timeout,
        timeout=resolve_download_timeout(args),
        database=DatabaseSettings.resolve(args.database, args.log_sql_info),
        handler=str(resolve(args.execute, ENV_CACHE_EVENT, None) or "") or None,
        cert_dir=resolve_cert_dir(args.cert_dir),
        insecure=args.insecure,
        allow_file=args.allow_file_uri,
        allow_empty_database=args.allow_empty_database,
        retry=tuple(args.retry),
    )
    return run_cache(settings, progress=TerminalProgress(), stats=stats)
