"""Short-lived signed tokens that let a browser's EventSource (which cannot send headers)
read one scan's events, or one tenant's.

A token is ``v1.<scope>.<subject>.<expiry>.<signature>``: scope ``s`` (a scan id),
``b`` (a batch id) or ``t`` (a tenant), expiry in epoch seconds, and itsdangerous's HMAC-SHA256
signature over the rest. The subject may hold dots (tenant ``acme.eu``): the
scope is read from the left and the expiry and signature from the right, which
never hold one. The first configured key signs; every key verifies, so keys
rotate without cutting off tokens already handed out.
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Literal

import msgspec
from itsdangerous import BadSignature, Signer

from shared.settings import Secret

Scope = Literal["s", "t", "b"]

VERSION = "v1"
# Scope from the left, expiry (ASCII digits) from the right; the subject is what is between.
_BODY = re.compile(r"v1\.([stb])\.(.+)\.([0-9]{1,20})")
# Tells these signatures apart from any other use of the same keys.
_SALT = b"labelscan.event-token"


class TokenError(ValueError):
    """The token is malformed, expired or not signed by a known key."""


class Grant(msgspec.Struct, frozen=True, kw_only=True):
    """What a valid token allows: one scan's or one tenant's events."""

    scope: Scope
    subject: str
    expires: int


def _signer(keys: tuple[Secret, ...]) -> Signer:
    # itsdangerous signs with the last key and tries them all; settings list the signer first.
    return Signer([key.value for key in reversed(keys)], salt=_SALT, digest_method=hashlib.sha256)


def sign(keys: tuple[Secret, ...], scope: Scope, subject: str, ttl_s: int) -> str:
    """A token for ``subject`` valid ``ttl_s`` seconds, signed with the first key."""
    if not keys:
        raise TokenError("no event key configured (LABELSCAN_EVENT_KEYS)")
    if not subject:
        raise TokenError("a token needs a subject")
    body = f"{VERSION}.{scope}.{subject}.{int(time.time()) + ttl_s}"
    return _signer(keys).sign(body).decode("ascii")


def verify(keys: tuple[Secret, ...], token: str) -> Grant:
    """The grant of a valid token; TokenError otherwise."""
    body, _, signature = token.rpartition(".")
    match = _BODY.fullmatch(body)
    if match is None or not signature or not token.isascii():
        raise TokenError("malformed token")
    if not keys:
        raise TokenError("bad token signature (no event key configured)")
    try:
        _signer(keys).unsign(token)
    except BadSignature:
        raise TokenError("bad token signature") from None
    expires = int(match[3])
    if expires < time.time():
        raise TokenError("token expired")
    scope: Scope = "s" if match[1] == "s" else "b" if match[1] == "b" else "t"
    return Grant(scope=scope, subject=match[2], expires=expires)
