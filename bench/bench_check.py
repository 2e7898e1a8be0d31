"""How long ``vmcatcher_check`` takes on a large site: 100 subscriptions, 100,000 images.

The probe runs every few minutes from NRPE next to the cron jobs, so it must stay
well under a second however large the site (docs/monitoring.md). The database is
built with bulk inserts through the models: every subscription authorised, with
a current list, its images subscribed (cache=1) and available, so the "wanted
images" query returns all 100,000 rows (the worst case); the cache directory is
empty and a CA directory from the test PKI holds current CRLs. Baselines measured
in the same run: ``python -c pass`` and ``vmcatcher_endorser -l`` (interpreter,
imports, opening the same database).

    .venv/bin/python bench/bench_check.py [rounds] [subscriptions] [images per subscription]
"""

from __future__ import annotations

import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert

from tests.support.pki import TestPKI
from vmcatcher.db import prepare_database
from vmcatcher.db.models import (
    Endorser,
    EndorserPrincipal,
    ImageDefinition,
    ImageInstance,
    ImageListInstance,
    RunRecord,
    Subscription,
    SubscriptionAuth,
)
from vmcatcher.timeutil import utcnow

BIN = Path(sys.executable).parent


def build(url: str, subscriptions: int, per_sub: int) -> None:
    """Fill the database with bulk inserts (ids assigned here, so rows link up)."""
    now = utcnow()
    database = prepare_database(url)
    digest = hashlib.sha512(b"image").hexdigest()
    with database.session() as session, session.begin():
        session.execute(insert(Endorser), [{"id": 1, "identifier": "bench endorser"}])
        session.execute(
            insert(EndorserPrincipal),
            [{"id": 1, "hv_dn": "/CN=bench", "hv_ca": "/CN=bench CA", "endorser_id": 1}],
        )
        subs, auths, lists, definitions, images = [], [], [], [], []
        for s in range(1, subscriptions + 1):
            subs.append(
                {
                    "id": s,
                    "identifier": f"sub-{s:04d}",
                    "uri": f"https://l/{s}",
                    "authorised": True,
                    "imagelist_latest": s,
                    "updated": now,
                    "trust_anchor": 1,
                    "update_mode": 0,
                }
            )
            auths.append({"id": s, "subscription_id": s, "endorser_id": 1, "authorised": True})
            lists.append(
                {
                    "id": s,
                    "data": b"signed list",
                    "data_hash": f"{s:0128x}",
                    "expired": None,
                    "sub_auth_id": s,
                    "imported": now,
                    "created": now,
                    "expires": now + timedelta(days=30),
                    "version": "1",
                }
            )
            for i in range(per_sub):
                n = (s - 1) * per_sub + i + 1
                definitions.append(
                    {
                        "id": n,
                        "identifier": f"img-{n:08d}",
                        "latest": n,
                        "cache": 1,
                        "subscription_id": s,
                    }
                )
                images.append(
                    {
                        "id": n,
                        "description": "d",
                        "hypervisor": "kvm",
                        "sha512": digest,
                        "uri": f"https://i/{n}",
                        "os": "linux",
                        "osversion": "1",
                        "arch": "x86_64",
                        "version": "1",
                        "size": 1024,
                        "title": "t",
                        "comments": None,
                        "definition_id": n,
                        "list_instance_id": s,
                    }
                )
        for model, rows in (
            (Subscription, subs),
            (SubscriptionAuth, auths),
            (ImageListInstance, lists),
            (ImageDefinition, definitions),
            (ImageInstance, images),
        ):
            session.execute(insert(model), rows)
        for command in ("update", "cache"):
            session.add(
                RunRecord(command=command, started=now, finished=now, exit_code=0, counts="{}")
            )
    database.close()


def timed(argv: list[str], cwd: str, env: dict[str, str], rounds: int, ok=(0,)) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
        samples.append(time.perf_counter() - start)
        assert done.returncode in ok, (argv, done.returncode, done.stdout, done.stderr)
    return statistics.median(samples)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    subscriptions = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    per_sub = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/vmcatcher.db"
        started = time.perf_counter()
        build(url, subscriptions, per_sub)
        print(
            f"built {subscriptions} subscriptions, {subscriptions * per_sub} images "
            f"in {time.perf_counter() - started:.1f} s"
        )
        ca_dir = TestPKI().write_ca_dir(Path(tmp) / "certificates")
        for name in ("cache/partial", "cache/expired"):
            os.makedirs(Path(tmp) / name)
        env = {k: v for k, v in os.environ.items() if not k.startswith("VMCATCHER_")}
        env.update(VMCATCHER_RDBMS=url, VMCATCHER_DIR_CERT=str(ca_dir))
        baseline = timed([sys.executable, "-c", "pass"], tmp, env, rounds)
        endorser = timed([str(BIN / "vmcatcher_endorser"), "-l"], tmp, env, rounds)
        probe = timed(
            [str(BIN / "vmcatcher_check"), "--free-warning", "0", "--free-critical", "0"],
            tmp,
            env,
            rounds,
            ok=(0, 1),
        )
        print(f"baseline python -c pass: {baseline * 1000:.0f} ms")
        print(f"vmcatcher_endorser -l: {endorser * 1000:.0f} ms ({endorser / baseline:.1f}x)")
        print(f"vmcatcher_check: {probe * 1000:.0f} ms ({probe / baseline:.1f}x baseline)")


if __name__ == "__main__":
    main()
