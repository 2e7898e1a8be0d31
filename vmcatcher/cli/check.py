"""``vmcatcher_check``: a Nagios/NRPE probe of subscriptions, CRLs and the cache.

Parses the options, calls :func:`vmcatcher.services.check.run_check`, prints
the status line (or JSON) and exits with the Nagios code (docs/monitoring.md).
Any failure of the probe itself is UNKNOWN (3), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from vmcatcher.cli.common import add_database_options, new_parser
from vmcatcher.monitoring import Status
from vmcatcher.settings import (
    DEFAULT_CERT_DIR,
    DEFAULT_DATABASE,
    ENV_CACHE_DIR_CACHE,
    ENV_CACHE_DIR_DOWNLOAD,
    ENV_CERT_DIR,
    ENV_CRL_POLICY,
    ENV_DATABASE,
    ENV_OUTPUT_FORMAT,
    resolve,
)

FORMATS = ("nagios", "json")

DESCRIPTION = """\
Check a vmcatcher site the way Nagios/NRPE or ARGO expects: one status line
'VMCATCHER OK|WARNING|CRITICAL|UNKNOWN - ...' with performance data, exit code
0/1/2/3. Read-only and without network: reads the database, the CA directory
and the cache directory.

checks: subscriptions not fetched lately, stored lists expiring or expired,
CRLs past or near their nextUpdate (and CAs without one), wanted images given
up or of the wrong size, free space of the cache file system, a cache lock held
too long, the last vmcatcher_subscribe -U and vmcatcher_cache runs (failed or
too old). A missing database, or one not at the current schema, is UNKNOWN.
"""


def _number(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a number of at least 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("vmcatcher_check", DESCRIPTION)
    where = parser.add_argument_group("what to check")
    where.add_argument(
        "-C", "--cache-dir", metavar="DIR_CACHE",
        help="cache directory, as for vmcatcher_cache; env VMCATCHER_CACHE_DIR_CACHE; "
        "default ./cache",
    )  # fmt: skip
    where.add_argument(
        "-p", "--partial-dir", metavar="DIR_PARTIAL",
        help="partial downloads directory; env VMCATCHER_CACHE_DIR_DOWNLOAD; "
        "default <cache>/partial",
    )  # fmt: skip
    where.add_argument(
        "--no-cache", action="store_true",
        help="skip every cache check (sites that do not run vmcatcher_cache)",
    )  # fmt: skip
    where.add_argument(
        "-c", "--cert-dir", metavar="INPUTDIR",
        help="Grid CA directory whose CRLs are checked; env VMCATCHER_DIR_CERT; "
        "default /etc/grid-security/certificates/",
    )  # fmt: skip
    where.add_argument(
        "--crl-policy", metavar="POLICY",
        help="as for vmcatcher_subscribe: 'strict' (default: stale or missing CRL is "
        "CRITICAL), 'relaxed' (WARNING), 'off' (CRLs not checked); env VMCATCHER_CRL_POLICY",
    )  # fmt: skip
    add_database_options(parser)
    limits = parser.add_argument_group("thresholds (WARNING / CRITICAL)")
    pairs = [
        ("stale", "HOURS", 48, 168, "a subscription's list not fetched and verified for"),
        ("expiry", "DAYS", 7, 1, "a stored list expires within"),
        ("lock", "MINUTES", 120, 360, "another run holds the cache lock for"),
        ("run-age", "HOURS", 26, 72, "the last -U or cache run finished longer ago than"),
        ("free", "MIB", 5120, 1024, "free space in the cache file system below"),
    ]
    for name, unit, warn, crit, text in pairs:
        limits.add_argument(
            f"--{name}-warning", type=_number, default=warn, metavar=unit,
            help=f"WARNING when {text} {unit} (default {warn})",
        )  # fmt: skip
        limits.add_argument(
            f"--{name}-critical", type=_number, default=crit, metavar=unit,
            help=f"CRITICAL when {text} {unit} (default {crit})",
        )  # fmt: skip
    limits.add_argument(
        "--crl-warning", type=_number, default=24, metavar="HOURS",
        help="WARNING when a CRL's nextUpdate is within HOURS (default 24)",
    )  # fmt: skip
    parser.add_argument(
        "-f", "--format", metavar="FORMAT",
        help="nagios (the status line, default) or json; env VMCATCHER_OUTPUT_FORMAT "
        "(values other than json mean nagios)",
    )  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # a usage error is UNKNOWN for Nagios, not 2 (CRITICAL)
        if stop.code in (0, None):
            raise
        print("VMCATCHER UNKNOWN - invalid command line (see vmcatcher_check --help)")
        return int(Status.UNKNOWN)
    try:
        return run(args)
    except Exception as error:  # a probe that fails is UNKNOWN, on one line
        text = " ".join(f"{type(error).__name__}: {error}".split())
        print(f"VMCATCHER UNKNOWN - probe failed: {text}")
        return int(Status.UNKNOWN)


def thresholds(args: argparse.Namespace):  # -> vmcatcher.probe.Thresholds
    from vmcatcher.probe import DAY, HOUR, MIB, Thresholds

    return Thresholds(
        stale_warning=args.stale_warning * HOUR,
        stale_critical=args.stale_critical * HOUR,
        expiry_warning=args.expiry_warning * DAY,
        expiry_critical=args.expiry_critical * DAY,
        crl_warning=args.crl_warning * HOUR,
        free_warning=args.free_warning * MIB,
        free_critical=args.free_critical * MIB,
        lock_warning=args.lock_warning * 60,
        lock_critical=args.lock_critical * 60,
        run_warning=args.run_age_warning * HOUR,
        run_critical=args.run_age_critical * HOUR,
    )


def run(args: argparse.Namespace) -> int:
    from vmcatcher.probe import as_json, status_line
    from vmcatcher.services.check import CheckOptions, run_check
    from vmcatcher.services.trust import parse_crl_policy

    fmt = str(resolve(args.format, ENV_OUTPUT_FORMAT, "nagios"))
    if args.format is not None and fmt not in FORMATS:
        print(f"VMCATCHER UNKNOWN - invalid format '{fmt}': choose nagios or json")
        return int(Status.UNKNOWN)
    policy = parse_crl_policy(str(resolve(args.crl_policy, ENV_CRL_POLICY, "strict")))
    cache_dir = (
        None if args.no_cache else str(resolve(args.cache_dir, ENV_CACHE_DIR_CACHE, "cache"))
    )
    partial = resolve(args.partial_dir, ENV_CACHE_DIR_DOWNLOAD, None)
    options = CheckOptions(
        database_url=str(resolve(args.database, ENV_DATABASE, DEFAULT_DATABASE)),
        cert_dir=str(resolve(args.cert_dir, ENV_CERT_DIR, DEFAULT_CERT_DIR)),
        crl_policy=policy.value,
        cache_dir=cache_dir,
        partial_dir=str(partial) if partial and cache_dir else None,
        thresholds=thresholds(args),
    )
    result = run_check(options)
    if fmt == "json":
        json.dump(as_json(result), sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        print(status_line(result))
    sys.stdout.flush()
    return int(result.status)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
