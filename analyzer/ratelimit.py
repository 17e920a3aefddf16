"""One rate limit shared by every analyzer replica, enforced in Redis.

Every replica asks before each API call; the answer is either "go" (capacity
reserved) or "wait this long". Waiting is a sleep, not a poll. A 429, or
headers saying a limit is spent, pause the whole fleet at once.
"""

from __future__ import annotations

import uuid

import msgspec

from analyzer.backends import ApiLimits
from shared import scripts
from shared.clock import now_ms
from shared.keys import Keys
from shared.luascript import ScriptRunner
from shared.schemas import Usage
from shared.settings import Settings


class Reservation(msgspec.Struct, frozen=True, kw_only=True):
    """Capacity reserved for one call, to be settled with the real usage."""

    second: int
    input_tokens: int
    output_tokens: int


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """The limiter's answer: reserved (``wait_ms == 0``) or wait and why."""

    wait_ms: int
    reason: str
    reservation: Reservation | None = None


class RateLimiter:
    """The fleet-wide limits of ``ANTHROPIC_RPM`` / ``_INPUT_TPM`` / ``_OUTPUT_TPM``."""

    def __init__(self, run: ScriptRunner, keys: Keys, settings: Settings) -> None:
        self._run = run
        self._keys = scripts.LimiterKeys(
            requests=keys.ratelimit("requests"),
            input=keys.ratelimit("input"),
            output=keys.ratelimit("output"),
            state=keys.ratelimit("state"),
        )
        self._limits = (
            settings.anthropic_rpm,
            settings.anthropic_input_tpm,
            settings.anthropic_output_tpm,
        )
        self.prompt_tokens = settings.anthropic_prompt_tokens
        self.output_estimate = settings.anthropic_output_estimate

    def estimate(self, image_tokens: int) -> tuple[int, int]:
        """(input, output) tokens to reserve for one analysis of an image of that cost."""
        return image_tokens + self.prompt_tokens, self.output_estimate

    async def try_acquire(self, input_tokens: int, output_tokens: int) -> Decision:
        """Reserve capacity now, or say how long to wait; one round trip."""
        now = now_ms()
        rpm, input_tpm, output_tpm = self._limits
        wait = await self._run(
            scripts.RATELIMIT_ACQUIRE,
            self._keys,
            scripts.AcquireArgs(
                now_ms=now,
                rpm=rpm,
                input_tpm=input_tpm,
                output_tpm=output_tpm,
                need_in=input_tokens,
                need_out=output_tokens,
                member=uuid.uuid4().hex,
            ),
        )
        if wait.wait_ms > 0:
            return Decision(wait_ms=wait.wait_ms, reason=wait.reason)
        return Decision(
            wait_ms=0,
            reason="",
            reservation=Reservation(
                second=now // 1000,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
            ),
        )

    async def settle(self, reservation: Reservation, usage: Usage) -> None:
        """Correct the reservation with the tokens the API reports it used."""
        used_in = (
            usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
        )
        await self._run(
            scripts.RATELIMIT_SETTLE,
            scripts.BucketKeys(input=self._keys.input, output=self._keys.output),
            scripts.SettleArgs(
                second=reservation.second,
                input_delta=used_in - reservation.input_tokens,
                output_delta=usage.output_tokens - reservation.output_tokens,
            ),
        )

    async def pause(self, seconds: float, reason: str) -> None:
        """Stop every replica's calls for ``seconds``."""
        await self.pause_until(now_ms() + int(seconds * 1000), reason)

    async def pause_until(self, until_ms: int, reason: str) -> None:
        """Stop every replica's calls until ``until_ms`` (epoch ms)."""
        await self._run(
            scripts.RATELIMIT_PAUSE,
            scripts.PauseKeys(state=self._keys.state),
            scripts.PauseArgs(until_ms=until_ms, reason=reason),
        )

    async def observe(self, limits: ApiLimits | None, next_input: int) -> None:
        """Slow the fleet before it is refused: pause until a spent limit resets."""
        if limits is None:
            return
        spent = [
            (limits.requests_remaining, 1, limits.requests_reset_ms, "requests"),
            (
                limits.input_tokens_remaining,
                next_input,
                limits.input_tokens_reset_ms,
                "input tokens",
            ),
            (
                limits.output_tokens_remaining,
                self.output_estimate,
                limits.output_tokens_reset_ms,
                "output tokens",
            ),
        ]
        for remaining, need, reset_ms, what in spent:
            if remaining is not None and reset_ms is not None and remaining < need:
                await self.pause_until(reset_ms, f"API reports {what} spent until reset")
