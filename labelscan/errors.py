"""What the client raises: the API's refusals by status, and what the network did."""

from __future__ import annotations

import httpx
import msgspec

from shared.schemas import BatchErrors, ErrorBody, ItemError


class LabelscanError(Exception):
    """Base of every client error."""

    retryable = False


class ApiError(LabelscanError):
    """A non-2xx answer, carrying the API's ``error``, ``detail`` and ``field``."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        field: str | None = None,
        *,
        errors: list[ItemError] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {error}: {detail}" + (f" ({field})" if field else ""))
        self.status = status
        self.error = error
        self.detail = detail
        self.field = field
        self.errors = errors or []
        """Per-item reasons of a refused batch (``index``, ``field``, ``reason``)."""
        self.retry_after = retry_after


class InvalidRequest(ApiError):
    """400, 413, 415 or 422: the request itself is wrong; resending it changes nothing."""


class AuthError(ApiError):
    """401 or 403: a missing, wrong or insufficient API key."""


class NotFound(ApiError):
    """404: no such scan (or batch) for this key, or it has expired."""


class ConflictError(ApiError):
    """409: the scan's state does not allow it (cancel a finished scan, retry a live one)."""


class RateLimited(ApiError):
    """429: over the key's request rate or daily quota; ``retry_after`` says when to come back."""

    retryable = True


class ServerError(ApiError):
    """5xx: the service could not answer now (503 while its Redis is unreachable)."""

    retryable = True


class ConnectionLost(LabelscanError):
    """The gateway or notifier could not be reached, or kept dropping the stream."""

    retryable = True


class UnexpectedAnswer(LabelscanError):
    """A 2xx answer this client cannot read: not JSON, or not the shape it expects.

    Usually something else answers at the URL (a proxy's page, another service), so
    check ``LABELSCAN_URL``; else the gateway and the client are too far apart in version.
    """


class WaitTimeout(LabelscanError):
    """A scan or batch did not finish within the time the caller gave it."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    401: AuthError,
    403: AuthError,
    404: NotFound,
    409: ConflictError,
    413: InvalidRequest,
    415: InvalidRequest,
    422: InvalidRequest,
    429: RateLimited,
}

_error_body = msgspec.json.Decoder(ErrorBody)
_batch_body = msgspec.json.Decoder(BatchErrors)


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after", "")
    try:
        return float(raw)
    except ValueError:
        return None


def from_response(response: httpx.Response) -> ApiError:
    """The typed error for a non-2xx ``response`` (whatever its body holds)."""
    status = response.status_code
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    retry_after = _retry_after(response)
    try:
        body = _error_body.decode(response.content)
    except msgspec.DecodeError:
        # Not the API's error body: a proxy's page, or a service that is not labelscan.
        text = response.text.strip()[:200] or response.reason_phrase
        return cls(status, "http_error", text, retry_after=retry_after)
    errors: list[ItemError] = []
    if body.error == "invalid_batch":
        try:
            errors = _batch_body.decode(response.content).errors
        except msgspec.DecodeError:
            errors = []  # an older gateway's invalid_batch without the per-item list
    return cls(status, body.error, body.detail, body.field, errors=errors, retry_after=retry_after)
