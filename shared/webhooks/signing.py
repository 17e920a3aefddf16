"""Signing by the Standard Webhooks specification (``webhook-id``/``-timestamp``/``-signature``).

The signature is ``v1,`` + base64 of HMAC-SHA256 over ``{id}.{timestamp}.{body}``,
keyed with the base64-decoded part of the secret after ``whsec_``; several
signatures, space-separated, are sent while an old secret is still honoured.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PREFIX = "whsec_"
SECRET_BYTES = 32
"""The specification asks for 24 to 64 random bytes."""


def new_secret() -> str:
    """A fresh signing secret, ``whsec_`` + base64 of random bytes."""
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of a message with ``secret``."""
    key = base64.b64decode(secret.removeprefix(PREFIX))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def headers(
    secrets_: list[str], msg_id: str, timestamp: int, body: bytes
) -> list[tuple[bytes, bytes]]:
    """The three Standard Webhooks headers, signed with every secret in ``secrets_``."""
    sig = " ".join(signature(s, msg_id, timestamp, body) for s in secrets_)
    return [
        (b"webhook-id", msg_id.encode()),
        (b"webhook-timestamp", str(timestamp).encode()),
        (b"webhook-signature", sig.encode()),
    ]
