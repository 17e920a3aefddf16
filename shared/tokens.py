"""Short-lived signed tokens that let a browser's EventSource (which cannot send
headers) read one scan's events, or one tenant's.

A token is ``v1.<scope>.<subject>.<expiry>.<signature>``: scope ``s`` (a scan id)
or ``t`` (a tenant), expiry in epoch seconds, an HMAC-SHA256 over the rest. The
first of the configured keys signs; every key verifies, so keys rotate without
cutting off tokens already handed out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Literal

import msgspec

from shared.settings import Secret

Scope = Literal["s", "t"]


class TokenError(ValueError):
    """The token is malformed, expired or not signed by a known key."""


class Grant(msgspec.Struct, frozen=True, kw_only=True):
    """What a valid token allows: one scan's or one tenant's events."""

    scope: Scope
    subject: str
    expires: int


def _mac(key: Secret, message: str) -> str:
    digest = hmac.new(key.value.encode(), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign(keys: tuple[Secret, ...], scope: Scope, subject: str, ttl_s: int) -> str:
    """A token for ``subject`` valid ``ttl_s`` seconds, signed with the first key."""
    if not keys:
        raise TokenError("no event key configured (LABELSCAN_EVENT_KEYS)")
    body = f"v1.{scope}.{subject}.{int(time.time()) + ttl_s}"
    return f"{body}.{_mac(keys[0], body)}"


def verify(keys: tuple[Secret, ...], token: str) -> Grant:
    """The grant of a valid token; TokenError otherwise."""
    parts = token.split(".")
    if len(parts) != 5 or parts[0] != "v1" or parts[1] not in ("s", "t"):
        raise TokenError("malformed token")
    body, signature = ".".join(parts[:4]), parts[4]
    # Every key is compared, in constant time, whichever matches.
    valid = False
    for key in keys:
        valid |= hmac.compare_digest(_mac(key, body), signature)
    if not valid:
        raise TokenError("bad token signature")
    if not parts[3].isdigit() or int(parts[3]) < time.time():
        raise TokenError("token expired")
    return Grant(scope=parts[1], subject=parts[2], expires=int(parts[3]))  # type: ignore[arg-type]
