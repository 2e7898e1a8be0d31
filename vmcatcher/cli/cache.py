"""``vmcatcher_cache``: download, verify and expire cached images (spec §10, §11)."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from vmcatcher.cli.common import add_database_options, add_logging_options, new_parser
from vmcatcher.cli.monitoring_options import add_metrics_option, main_recorded
from vmcatcher.errors import UsageError
from vmcatcher.logsetup import setup_logging
from vmcatcher.monitoring import RunCommand, RunStats
from vmcatcher.settings import (
    ENV_CACHE_ACTION_CHECK,
    ENV_CACHE_ACTION_DOWNLOAD,
    ENV_CACHE_ACTION_EXPIRE,
    ENV_CACHE_DIR_CACHE,
    ENV_CACHE_DIR_DOWNLOAD,
    ENV_CACHE_DIR_EXPIRE,
    ENV_CACHE_EVENT,
    env_flag,
    resolve,
    resolve_cert_dir,
    resolve_database,
    resolve_seconds,
    transfer_timeout,
)

if TYPE_CHECKING:
    from vmcatcher.db.engine import Database

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


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


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
    dirs.add_argument(
        "--expired-max-count", type=_positive_int, metavar="N",
        help="keep at most N files in the expired directory (oldest removed first)",
    )  # fmt: skip
    dirs.add_argument(
        "--expired-max-age", type=float, metavar="DAYS",
        help="remove expired files older than DAYS days",
    )  # fmt: skip
    events = parser.add_argument_group("events")
    events.add_argument(
        "-x", "--execute", metavar="EVENT",
        help="shell command run for every event; env VMCATCHER_CACHE_EVENT",
    )  # fmt: skip
    events.add_argument(
        "--event-timeout", type=float, metavar="SECONDS",
        help="kill a handler (and its children) after this long; env VMCATCHER_EVENT_TIMEOUT; "
        "default 10",
    )  # fmt: skip
    transfer = parser.add_argument_group("downloads")
    transfer.add_argument(
        "--parallel", type=_positive_int, metavar="N",
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
        "--wait", nargs="?", type=float, const=-1.0, metavar="SECONDS",
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


def resolve_actions(args: argparse.Namespace) -> set[str]:
    """Union of the flags and VMCATCHER_CACHE_ACTION_*, with the original's defaults."""
    from vmcatcher.services.cache import CHECK, DOWNLOAD, EXPIRE

    actions = set()
    if args.expire or env_flag(ENV_CACHE_ACTION_EXPIRE):
        actions.add(EXPIRE)
    if args.sha512 or env_flag(ENV_CACHE_ACTION_CHECK):
        actions.add(CHECK)
    if args.download or env_flag(ENV_CACHE_ACTION_DOWNLOAD):
        actions.add(DOWNLOAD)
    if not actions:
        log.info("Defaulting actions as 'expire', and 'download'.")
        actions = {EXPIRE, DOWNLOAD}
    elif DOWNLOAD in actions and EXPIRE not in actions:
        log.info("Defaulting action 'expire', as 'download' is requested.")
        actions.add(EXPIRE)
    return actions


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
    value = resolve(args.parallel, ENV_PARALLEL, DEFAULT_PARALLEL)
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = 0
    if count < 1:
        raise UsageError(f"Invalid parallel downloads '{value}': a whole number above 0")
    return count


def resolve_download_timeout(args: argparse.Namespace) -> tuple[float, float]:
    """(connect, read) seconds for image downloads: ``--timeout``/env, default 60."""
    read = resolve_seconds(args.timeout, ENV_DOWNLOAD_TIMEOUT, DEFAULT_DOWNLOAD_TIMEOUT,
                           "download timeout")  # fmt: skip
    return transfer_timeout(read)


def _lock_in_database(
    database: Database, cache_dir: Path, wait: bool | float, held: ExitStack
) -> None:
    """On PostgreSQL also take the cache's advisory lock: runs on other hosts share the DB.

    The file lock alone cannot be trusted across hosts (shared file systems
    differ); see :mod:`vmcatcher.cache.lock` for the key. SQLite databases are
    local files, so the file lock is enough there.
    """
    if database.engine.dialect.name != "postgresql":
        return
    from vmcatcher.cache.lock import DatabaseAdvisoryLock, advisory_lock_key

    lock = DatabaseAdvisoryLock(
        database.engine,
        advisory_lock_key(cache_dir),
        wait,
        name=str(cache_dir),
        database=database.masked_url,
    )
    held.enter_context(lock)


def run(args: argparse.Namespace, stats: RunStats | None = None) -> int:
    setup_logging(args.verbose, args.quiet, args.log_config)
    actions = resolve_actions(args)
    directories = resolve_directories(args)
    parallel = resolve_parallel(args)
    event_timeout = resolve_seconds(args.event_timeout, ENV_EVENT_TIMEOUT, 10.0, "event timeout")
    download_timeout = resolve_download_timeout(args)

    from vmcatcher.cache.layout import CacheLayout
    from vmcatcher.cache.lock import CacheLock

    layout = CacheLayout(*directories)
    database_url = resolve_database(args.database)
    wait = False if args.wait is None else (True if args.wait < 0 else args.wait)
    with CacheLock(layout.cache_dir, wait=wait), ExitStack() as held:
        from vmcatcher.cli.database import open_configured_database
        from vmcatcher.events import EventRunner
        from vmcatcher.fetch import image_tls_verify
        from vmcatcher.services.cache import CacheOptions, CacheRun, base_environment

        database = open_configured_database(args)
        held.callback(database.close)
        _lock_in_database(database, layout.cache_dir, wait, held)
        command = resolve(args.execute, ENV_CACHE_EVENT, None)
        events = EventRunner(
            str(command) if command else None,
            base_env=base_environment(layout, database_url),
            timeout=event_timeout,
        )
        events.stats = stats
        cert_dir = resolve_cert_dir(args.cert_dir)
        options = CacheOptions(
            actions=actions,
            events=events,
            tls_verify=image_tls_verify(cert_dir, insecure=args.insecure),
            allow_file=args.allow_file_uri,
            parallel=parallel,
            timeout=download_timeout,
            progress=True,
            expired_max_count=args.expired_max_count,
            expired_max_age_days=args.expired_max_age,
        )
        if stats is not None:
            options.stats = stats
        with database.session() as session:
            return CacheRun(layout, session, options).run()
