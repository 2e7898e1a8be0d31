"""The verifying core's trust half: S/MIME signatures checked against a Grid CA directory.

Bytes and a :class:`TrustStore` in, a :class:`VerifiedMessage` or a typed
:class:`~vmcatcher.errors.TrustError` out; no network, no database. M2Crypto
is only imported when a store is used or a message verified, so importing
this package is cheap for commands that never verify anything.
"""

from vmcatcher.trust.crl import CRL_POLICY_ENV, CrlPolicy
from vmcatcher.trust.dn import dn_equal, dn_key, dn_unescaped
from vmcatcher.trust.policy import PolicySet
from vmcatcher.trust.smime import VerifiedMessage, extract_payload_unverified, verify_message
from vmcatcher.trust.store import TrustStore, load_trust_store

__all__ = [
    "CRL_POLICY_ENV",
    "CrlPolicy",
    "PolicySet",
    "TrustStore",
    "VerifiedMessage",
    "dn_equal",
    "dn_key",
    "dn_unescaped",
    "extract_payload_unverified",
    "load_trust_store",
    "verify_message",
]
