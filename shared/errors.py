"""Exception hierarchy: what went wrong decides whether a scan is retried."""

from __future__ import annotations


class LabelscanError(Exception):
    """Base of every labelscan error."""

    kind = "error"


class RetryableError(LabelscanError):
    """A transient failure: the scan may succeed if tried again later."""

    kind = "transient"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(LabelscanError):
    """A failure that trying again will not fix."""

    kind = "permanent"


class InvalidImageError(PermanentError):
    """The image is missing, too large, or not an image."""

    kind = "invalid_image"


class InvalidAnswerError(PermanentError):
    """The backend's answer did not match the result schema."""

    kind = "invalid_answer"


class BackendError(PermanentError):
    """The analysis backend refused the request (4xx other than 429)."""

    kind = "backend_error"


class ImageUnavailableError(RetryableError):
    """The image URL could not be fetched right now."""

    kind = "image_unavailable"


class BackendUnavailableError(RetryableError):
    """The analysis backend is rate-limiting, overloaded or unreachable."""

    kind = "backend_unavailable"


class RateLimitedError(BackendUnavailableError):
    """The API answered 429: the whole fleet should pause for ``retry_after``."""

    kind = "rate_limited"
