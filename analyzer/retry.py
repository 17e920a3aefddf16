"""When to try a failed scan again, and after how long."""

from __future__ import annotations

import random

from shared.errors import InvalidAnswerError, LabelscanError, RetryableError

# An answer that fails schema validation may be a fluke of sampling; twice is not.
INVALID_ANSWER_ATTEMPTS = 2


def should_retry(exc: LabelscanError, attempt: int, max_attempts: int) -> bool:
    """Whether ``exc`` on attempt number ``attempt`` deserves another attempt."""
    if attempt >= max_attempts:
        return False
    if isinstance(exc, InvalidAnswerError):
        return attempt < INVALID_ANSWER_ATTEMPTS
    return isinstance(exc, RetryableError)


def backoff_delay(
    attempt: int,
    *,
    base_s: float,
    cap_s: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Exponential backoff with full jitter; never sooner than the server's ``retry-after``."""
    ceiling = min(cap_s, base_s * 2 ** max(attempt - 1, 0))
    delay = (rng or random).uniform(0, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap_s))
    return delay
