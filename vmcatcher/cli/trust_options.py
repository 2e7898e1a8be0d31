"""The trust options shared by the commands that verify lists: CA directory and CRL policy."""

from __future__ import annotations

import argparse
import os

from vmcatcher.errors import ConfigError
from vmcatcher.settings import ENV_CRL_POLICY, resolve, resolve_cert_dir


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


def resolve_crl_policy(args: argparse.Namespace):  # -> vmcatcher.trust.CrlPolicy
    from vmcatcher.trust import CrlPolicy

    return CrlPolicy.parse(str(resolve(args.crl_policy, ENV_CRL_POLICY, "strict")))


def load_configured_trust_store(args: argparse.Namespace):  # -> vmcatcher.trust.TrustStore
    """Resolve ``-c``/env/default and load the CA directory, with the original's message."""
    from vmcatcher.errors import TrustStoreError
    from vmcatcher.trust import load_trust_store

    cert_dir = resolve_cert_dir(args.cert_dir)
    if not os.path.isdir(cert_dir):
        raise ConfigError(f"Invalid x509 trust store directory: {cert_dir}.")
    try:
        return cert_dir, load_trust_store(cert_dir)
    except TrustStoreError as error:
        raise ConfigError(f"Invalid x509 trust store directory: {cert_dir}. ({error})") from None


def payload_reader(store, crl_policy):  # -> vmcatcher.output.writer.PayloadReader | None
    """What the ``message`` format uses to show a stored list: its re-verified payload."""
    if store is None:
        return None
    from vmcatcher.services.verification import verified_payload

    return lambda data: verified_payload(data, store, crl_policy)
