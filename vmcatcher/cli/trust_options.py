"""The trust options shared by the commands that verify lists: CA directory and CRL policy."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from vmcatcher.settings import ENV_CRL_POLICY, resolve, resolve_cert_dir

if TYPE_CHECKING:
    from vmcatcher.services.trust import CrlPolicy, TrustStore


def add_trust_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--cert-dir",
        metavar="INPUTDIR",
        help="Grid CA directory (hashed CA certificates, CRLs, namespaces, signing policies); "
        "env VMCATCHER_DIR_CERT; default /etc/grid-security/certificates/",
    )
    parser.add_argument(
        "--crl-policy",
        metavar="POLICY",
        help="CRL checking: 'strict' (default: every CA needs a current CRL), 'relaxed' "
        "(a missing or expired CRL is a WARNING), 'off'; env VMCATCHER_CRL_POLICY",
    )


def resolve_crl_policy(args: argparse.Namespace) -> CrlPolicy:
    from vmcatcher.services.trust import parse_crl_policy

    return parse_crl_policy(str(resolve(args.crl_policy, ENV_CRL_POLICY, "strict")))


def load_configured_trust_store(args: argparse.Namespace) -> tuple[str, TrustStore]:
    """Resolve ``-c``/env/default and load the CA directory."""
    from vmcatcher.services.trust import load_trust_store

    cert_dir = resolve_cert_dir(args.cert_dir)
    return cert_dir, load_trust_store(cert_dir)
