"""One rate limit shared by every analyzer replica, enforced in Redis.

Every replica asks before each API call; the answer is either "go" (capacity
reserved) or "wait this long". Waiting is a sleep, not a poll. A 429, or
headers saying a limit is spent, pause the whole fleet at once.

The provider counts a call when it arrives, which can be seconds after the
reservation (a fresh process builds its client, the image is prepared). So a
reservation is booked as pending (it counts against every replica from the
start) and re-dated by :func:`mark_sent` when the request leaves: the limit
then holds for the windows the provider sees, not only for reservation times.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar

import msgspec
import structlog
from redis.exceptions import RedisError

from analyzer.backends import ApiLimits
from shared import scripts
from shared.clock import now_ms
from shared.controls import LiveControls
from shared.keys import Keys
from shared.luascript import ScriptRunner
from shared.schemas import Usage
from shared.settings import Settings

log = structlog.get_logger("analyzer")

WINDOW_MS = 60_000
"""The provider's window: Anthropic's limits are per minute."""
SEND_MARGIN_MS = 1_000
"""A sent call counts from this much after it leaves (as the token buckets span
61 s): it still has to reach the provider, whose clock is not ours."""


class Reservation(msgspec.Struct, kw_only=True):
    """Capacity reserved for one call, to be settled with the real usage.

    Not frozen: :func:`mark_sent` moves ``second`` to the send time's bucket,
    where :meth:`RateLimiter.settle` must then correct the estimate.
    """

    member: str
    second: int
    """The bucket holding this call's tokens: pending (a window ahead) until sent."""
    input_tokens: int
    output_tokens: int


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """The limiter's answer: reserved (``wait_ms == 0``) or wait and why."""

    wait_ms: int
    reason: str
    reservation: Reservation | None = None


class RateLimiter:
    """The fleet-wide limits of ``ANTHROPIC_RPM`` / ``_INPUT_TPM`` / ``_OUTPUT_TPM``."""

    def __init__(
        self,
        run: ScriptRunner,
        keys: Keys,
        settings: Settings,
        *,
        window_ms: int = WINDOW_MS,
        controls: LiveControls | None = None,
    ) -> None:
        """``window_ms``: the provider's window; only tests shrink it. ``controls``: the
        limits operators set at runtime (None: the settings' only)."""
        self._run = run
        self._controls = controls
        self.window_ms = window_ms
        # Under half a window: ratelimit_acquire tells pending entries by that.
        self.send_margin_ms = min(SEND_MARGIN_MS, window_ms // 4)
        self._keys = scripts.LimiterKeys(
            requests=keys.ratelimit("requests"),
            input=keys.ratelimit("input"),
            output=keys.ratelimit("output"),
            state=keys.ratelimit("state"),
        )
        self._buckets = scripts.BucketKeys(input=self._keys.input, output=self._keys.output)
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
        """Reserve capacity now, or say how long to wait; one round trip.

        A reservation is pending until :func:`mark_sent` runs in the same task.
        """
        now = now_ms()
        member = uuid.uuid4().hex
        if self._controls is not None:
            # The limits are arguments of each call, so a change applies at the next one.
            limits = (await self._controls.current()).limits
            self._limits = (
                limits.anthropic_rpm,
                limits.anthropic_input_tpm,
                limits.anthropic_output_tpm,
            )
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
                member=member,
                window_ms=self.window_ms,
            ),
        )
        if wait.wait_ms > 0:
            return Decision(wait_ms=wait.wait_ms, reason=wait.reason)
        reservation = Reservation(
            member=member,
            second=(now + self.window_ms) // 1000,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
        )
        # The caller's task carries it to the backend's send hook (mark_sent):
        # no backend needs to know about the limiter.
        _unsent.set((self, reservation))
        return Decision(wait_ms=0, reason="", reservation=reservation)

    async def stamp(self, reservation: Reservation) -> None:
        """Re-date ``reservation`` to now: its request is leaving."""
        sent = now_ms() + self.send_margin_ms
        _, input_tpm, output_tpm = self._limits
        await self._run(
            scripts.RATELIMIT_STAMP,
            scripts.StampKeys(
                requests=self._keys.requests, input=self._keys.input, output=self._keys.output
            ),
            scripts.StampArgs(
                member=reservation.member,
                sent_ms=sent,
                reserved_second=reservation.second,
                input_tokens=reservation.input_tokens if input_tpm else 0,
                output_tokens=reservation.output_tokens if output_tpm else 0,
                window_ms=self.window_ms,
            ),
        )
        reservation.second = sent // 1000

    async def settle(self, reservation: Reservation, usage: Usage) -> None:
        """Correct the reservation with the tokens the API reports it used."""
        used_in = (
            usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
        )
        await self._run(
            scripts.RATELIMIT_SETTLE,
            self._buckets,
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


_unsent: ContextVar[tuple[RateLimiter, Reservation] | None] = ContextVar(
    "ratelimit_unsent", default=None
)


async def mark_sent() -> None:
    """The current task's API request is leaving now: re-date its reservation, once.

    Called by each backend at the moment its call starts (the Claude backend from
    its HTTP client, when the request is written to the connection). Without a
    reservation (no limiter, or already stamped) it does nothing. If Redis does not
    answer, the call goes ahead: its reservation still counts, pending, for longer.
    """
    unsent = _unsent.get()
    if unsent is None:
        return
    _unsent.set(None)
    limiter, reservation = unsent
    try:
        await limiter.stamp(reservation)
    except RedisError as exc:
        log.warning(
            "could not re-date the rate-limit reservation; it stays counted as pending",
            error=str(exc),
        )
