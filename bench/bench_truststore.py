"""Benchmark: open an IGTF-size CA directory and verify one signed image list.

Why: every ``vmcatcher_subscribe -U`` opens ``/etc/grid-security/certificates``
(about 100 CAs, each with a CRL and two policy files) before verifying a
handful of lists. Loading must stay a directory listing; a verification
parses only the CAs of its own chain plus the (small) policy files.

How: generates, in a temp dir, an IGTF-style directory of ``--cas`` root CAs
(``<alias>.pem`` + ``<hash>.0`` symlink, ``<hash>.r0`` CRL revoking
``--revoked`` serials, ``.namespaces``, ``.signing_policy``, ``.crl_url``),
one of which also has an intermediate CA that issued the endorser. Then:

* ``load``: :func:`load_trust_store` on the directory;
* ``cold verify``: load + first :func:`verify_message` (parses chain CAs, CRLs
  and all policy files);
* ``warm verify``: another verification with the same store;
* ``eager parse``: for comparison, parsing every certificate and CRL of the
  directory with M2Crypto (what a non-lazy loader would pay).

    .venv/bin/python bench/bench_truststore.py [--cas 100] [--revoked 200] [--rounds 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.lists import list_payload, make_image, make_image_list
from tests.support.pki import TestPKI, issue, make_crl, pool_key, sign


def build_directory(directory: Path, cas: int, revoked: int) -> tuple[TestPKI, bytes]:
    pki = TestPKI()
    day = timedelta(days=1)
    chosen = cas // 2
    for index in range(cas):
        alias = f"BenchCA{index:03d}"
        subject = f"/DC=org/DC=igtf-bench/O=Authority {index}/CN=Bench CA {index}"
        ca = issue(
            alias,
            subject,
            issuer=None,
            key=pool_key(index),
            serial=1,
            not_before=pki.now - day,
            not_after=pki.now + 3650 * day,
            ca=True,
        )
        if index == chosen:  # this CA gets the test PKI's real hierarchy instead
            ca = pki.root
        (directory / f"{alias}.pem").write_bytes(ca.cert_pem)
        (directory / f"{ca.hash}.0").symlink_to(f"{alias}.pem")
        serials = range(10_000, 10_000 + revoked)
        crl = make_crl(
            ca, revoked=serials, last_update=pki.now - day, next_update=pki.now + 30 * day
        )
        if index == chosen:
            crl = make_crl(
                ca,
                revoked=[*serials, pki.revoked.serial],
                last_update=pki.now - day,
                next_update=pki.now + 30 * day,
            )
        (directory / f"{ca.hash}.r0").write_bytes(crl)
        base = "/".join(ca.subject.split("/")[:3])
        (directory / f"{alias}.namespaces").write_text(
            f'#NAMESPACES-VERSION: 1.0\nTO Issuer "{ca.subject}" \\\n  PERMIT Subject "{base}/.*"\n'
        )
        (directory / f"{alias}.signing_policy").write_text(
            TestPKI.signing_policy_text(ca, base + "/*")
        )
        (directory / f"{alias}.crl_url").write_text(f"http://crl.example/{alias}.crl\n")
        for suffix in ("namespaces", "signing_policy", "crl_url"):
            (directory / f"{ca.hash}.{suffix}").symlink_to(f"{alias}.{suffix}")
    inter = pki.intermediate
    (directory / "BenchIssuing.pem").write_bytes(inter.cert_pem)
    (directory / f"{inter.hash}.0").symlink_to("BenchIssuing.pem")
    (directory / f"{inter.hash}.r0").write_bytes(pki.crl(inter))
    (directory / f"{inter.hash}.namespaces").write_text(TestPKI.namespaces_text(inter))
    (directory / f"{inter.hash}.signing_policy").write_text(TestPKI.signing_policy_text(inter))
    images = [make_image(f"image-{n:03d}") for n in range(20)]
    document = make_image_list(
        "bench-list",
        "https://images.example-grid.org/image.list",
        "1",
        images,
        pki.intermediate_endorser.subject,
        pki.intermediate_endorser.issuer,
    )
    return pki, sign(list_payload(document), pki.intermediate_endorser)


def timed(function, rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        function()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def report(label: str, samples: list[float]) -> None:
    print(
        f"{label:<34} median {statistics.median(samples):8.3f} ms   "
        f"min {min(samples):8.3f} ms   max {max(samples):8.3f} ms   (n={len(samples)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cas", type=int, default=100)
    parser.add_argument("--revoked", type=int, default=200, help="serials listed per CRL")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()

    from M2Crypto import X509

    from vmcatcher.trust import load_trust_store, verify_message

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "certificates"
        directory.mkdir()
        started = time.perf_counter()
        _pki, message = build_directory(directory, args.cas, args.revoked)
        files = len(list(directory.iterdir()))
        print(
            f"generated {args.cas + 1} CAs, {files} files, {args.revoked} revoked serials per "
            f"CRL in {time.perf_counter() - started:.2f} s; message {len(message)} bytes"
        )
        verify_message(message, load_trust_store(directory))  # warm the OS caches

        report("load_trust_store", timed(lambda: load_trust_store(directory), args.rounds))
        report(
            "load + first verify (cold store)",
            timed(lambda: verify_message(message, load_trust_store(directory)), args.rounds),
        )
        store = load_trust_store(directory)
        verify_message(message, store)
        report(
            "verify (warm store)", timed(lambda: verify_message(message, store), args.rounds * 10)
        )

        def eager() -> None:
            for path in directory.glob("*.0"):
                X509.load_cert(str(path))
            for path in directory.glob("*.r0"):
                X509.load_crl(str(path))

        report("eager parse of every cert + CRL", timed(eager, args.rounds))


if __name__ == "__main__":
    main()
