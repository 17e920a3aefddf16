"""Event tokens: signed with itsdangerous, any subject (dotted tenants too), rotating keys."""

from __future__ import annotations

import time

import pytest

from shared import tokens
from shared.settings import Secret

OLD, NEW = Secret("o" * 40), Secret("n" * 40)


@pytest.mark.parametrize(
    ("scope", "subject"),
    [("t", "acme.eu"), ("t", "a.b.c"), ("t", "shop-1_x"), ("s", "0123456789abcdef" * 2)],
)
def test_any_subject_round_trips(scope: tokens.Scope, subject: str) -> None:
    """Tenant names may hold dots ([A-Za-z0-9_.-]); a token for one verifies to that name."""
    grant = tokens.verify((NEW,), tokens.sign((NEW,), scope, subject, 60))
    assert (grant.scope, grant.subject) == (scope, subject)
    assert time.time() < grant.expires <= time.time() + 60


def test_a_dotted_subject_cannot_be_edited() -> None:
    """Moving the subject's dots or changing a letter breaks the signature."""
    token = tokens.sign((NEW,), "t", "acme.eu", 60)
    for forged in (token.replace(".acme.eu.", ".acme.us."), token.replace(".acme.eu.", ".acme.")):
        with pytest.raises(tokens.TokenError, match="signature"):
            tokens.verify((NEW,), forged)


def test_the_first_key_signs_and_every_key_verifies() -> None:
    """Rotation: add the new key first, keep the old one until its tokens expire."""
    token = tokens.sign((NEW, OLD), "t", "acme.eu", 60)
    assert tokens.verify((NEW,), token).subject == "acme.eu"
    assert tokens.verify((OLD, NEW), token).subject == "acme.eu"
    with pytest.raises(tokens.TokenError, match="signature"):
        tokens.verify((OLD,), token)


def test_expired_and_malformed_tokens_are_refused() -> None:
    """Past its expiry a good signature does not help; anything not shaped like a token is
    malformed, whatever the keys."""
    with pytest.raises(tokens.TokenError, match="expired"):
        tokens.verify((NEW,), tokens.sign((NEW,), "t", "acme.eu", -1))
    token = tokens.sign((NEW,), "s", "abc", 60)
    for bad in ("", "garbage", token.replace("v1.", "v2.", 1), token.replace(".s.", ".x.", 1)):
        with pytest.raises(tokens.TokenError, match="malformed"):
            tokens.verify((NEW,), bad)
    with pytest.raises(tokens.TokenError, match="no event key"):
        tokens.sign((), "s", "abc", 60)
