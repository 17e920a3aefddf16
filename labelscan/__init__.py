"""labelscan's Python client and ``labelscan`` command line, for the gateway's public API."""

from __future__ import annotations

from labelscan.client import AsyncClient, Client
from labelscan.errors import (
    ApiError,
    AuthError,
    ConflictError,
    ConnectionLost,
    InvalidRequest,
    LabelscanError,
    NotFound,
    RateLimited,
    ServerError,
    UnexpectedAnswer,
    WaitTimeout,
)

__all__ = [
    "ApiError",
    "AsyncClient",
    "AuthError",
    "Client",
    "ConflictError",
    "ConnectionLost",
    "InvalidRequest",
    "LabelscanError",
    "NotFound",
    "RateLimited",
    "ServerError",
    "UnexpectedAnswer",
    "WaitTimeout",
]
