"""The gateway's errors are the shared ones (``shared/http/errors.py``): one class, two services.

This name remains for the modules that still import ``ApiError`` from here.
"""

from __future__ import annotations

from shared.http.errors import ApiError

__all__ = ["ApiError"]
