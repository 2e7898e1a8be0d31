"""Load the configured trust: the CA directory and the CRL policy (docs/trust.md)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from vmcatcher.errors import ConfigError

if TYPE_CHECKING:
    from vmcatcher.trust import CrlPolicy, TrustStore


def parse_crl_policy(text: str) -> CrlPolicy:
    """``strict``/``relaxed``/``off`` -> the policy; anything else is a usage error."""
    from vmcatcher.trust import CrlPolicy

    return CrlPolicy.parse(text)


def load_trust_store(cert_dir: str) -> TrustStore:
    """Load the CA directory, refusing a missing or empty one with the original's message."""
    from vmcatcher.errors import TrustStoreError
    from vmcatcher.trust import load_trust_store as load

    if not os.path.isdir(cert_dir):
        raise ConfigError(f"Invalid x509 trust store directory: {cert_dir}.")
    try:
        return load(cert_dir)
    except TrustStoreError as error:
        raise ConfigError(f"Invalid x509 trust store directory: {cert_dir}. ({error})") from None


def payload_reader(
    store: TrustStore | None, crl_policy: CrlPolicy | None
) -> Callable[[bytes], bytes] | None:
    """What the ``message`` format uses to show a stored list: its re-verified payload."""
    if store is None or crl_policy is None:
        return None
    from vmcatcher.services.verification import verified_payload

    return lambda data: verified_payload(data, store, crl_policy)
