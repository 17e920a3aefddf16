"""Turning a ``POST /api/scans`` request into a validated scan, or a precise 4xx."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
from typing import Any

import msgspec
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.types import Message

from shared.clock import now_ms
from shared.errors import InvalidImageError
from shared.http.errors import ApiError
from shared.images import (
    INLINE_DECODE_BYTES,
    ImageTooLargeError,
    decode_fully,
    header,
    sniff_image,
)
from shared.netguard import UnsafeURLError, check_url
from shared.schemas import ScanCreate
from shared.settings import Settings


class Intake(msgspec.Struct, frozen=True, kw_only=True):
    """A validated scan request with its image bytes, if uploaded, and when it is due."""

    scan: ScanCreate
    image: bytes | None
    due_ms: int = 0


_FIELD = re.compile(r"at `\$\.([A-Za-z_]+)")
_decode_scan = msgspec.json.Decoder(ScanCreate).decode


async def read_scan(request: Request, settings: Settings) -> Intake:
    """Parse and validate the body of ``POST /api/scans``; raise ApiError on bad input."""
    _check_length(request, settings)
    # Content-Length is optional (chunked bodies): the count is kept while reading, too.
    request = capped(request, settings.max_body_bytes)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "application/json":
        scan = decode_json(await request.body())
        image = await decode_base64(scan.image_base64, settings) if scan.image_base64 else None
    elif media_type == "multipart/form-data":
        scan, image = await _read_multipart(request, settings)
    else:
        raise ApiError(
            415,
            "unsupported_media_type",
            "send application/json or multipart/form-data",
            "content-type",
        )
    check_source(scan, image, settings)
    return Intake(scan=scan, image=image, due_ms=due_at_ms(scan, settings))


def due_at_ms(scan: ScanCreate, settings: Settings) -> int:
    if scan.delay_ms is not None and scan.run_at is not None:
        raise ApiError(422, "invalid_field", "give delay_ms or run_at, not both", "run_at")
    now = now_ms()
    if scan.delay_ms is not None:
        due = now + scan.delay_ms
    elif scan.run_at is not None:
        if scan.run_at.tzinfo is None:
            raise ApiError(422, "invalid_field", "run_at needs a UTC offset (RFC 3339)", "run_at")
        due = int(scan.run_at.timestamp() * 1000)
    else:
        return 0
    # An uploaded image and the scan's record must outlive the wait.
    horizon_s = min(settings.image_ttl_s, settings.result_ttl_s)
    if due - now > horizon_s * 1000:
        field = "delay_ms" if scan.delay_ms is not None else "run_at"
        raise ApiError(
            422, "invalid_field", f"a scan can be scheduled at most {horizon_s} s ahead", field
        )
    return due if due > now else 0


def _check_length(request: Request, settings: Settings) -> None:
    raw = request.headers.get("content-length")
    if raw is None:
        return
    try:
        length = int(raw)
    except ValueError:
        raise ApiError(400, "bad_request", "invalid Content-Length", "content-length") from None
    if length > settings.max_body_bytes:
        raise ApiError(413, "too_large", f"body exceeds {settings.max_body_bytes} bytes", "body")


def capped(request: Request, limit: int) -> Request:
    """``request`` whose body reads fail with 413 as soon as they pass ``limit`` bytes."""
    receive = request.receive
    size = 0

    async def counting() -> Message:
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise ApiError(413, "too_large", f"body exceeds {limit} bytes", "body")
        return message

    return Request(request.scope, counting)


def decode_json(body: bytes) -> ScanCreate:
    try:
        return _decode_scan(body)
    except msgspec.ValidationError as exc:
        raise invalid(exc) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, "malformed_json", str(exc), "body") from None
    except UnicodeDecodeError as exc:
        # msgspec validates UTF-8 only when it builds a str, and then raises this instead.
        raise ApiError(
            400,
            "malformed_json",
            f"body is not valid UTF-8 ({exc.reason})",
            "body",
        ) from None


def invalid(exc: msgspec.ValidationError) -> ApiError:
    """The 422 of a body that decoded but did not validate, naming the field."""
    message = str(exc)
    match = _FIELD.search(message)
    field = match.group(1) if match else _missing_field(message)
    return ApiError(422, "invalid_field", message, field)


def _missing_field(message: str) -> str | None:
    match = re.search(r"Object missing required field `([A-Za-z_]+)`", message)
    if match:
        return match.group(1)
    match = re.search(r"unknown field `([A-Za-z_]+)`", message)
    return match.group(1) if match else None


async def decode_base64(data: str, settings: Settings) -> bytes:
    if len(data) > settings.max_image_bytes * 4 // 3 + 4:
        raise ApiError(
            413, "too_large", f"image exceeds {settings.max_image_bytes} bytes", "image_base64"
        )
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, "invalid_field", "not valid base64", "image_base64") from None
    return await check_image(raw, settings, "image_base64")


async def check_image(raw: bytes, settings: Settings, field: str) -> bytes:
    if len(raw) > settings.max_image_bytes:
        raise ApiError(413, "too_large", f"image exceeds {settings.max_image_bytes} bytes", field)
    if not raw:
        raise ApiError(422, "invalid_field", "image is empty", field)
    if sniff_image(raw) is None:
        raise ApiError(415, "unsupported_image", "image must be PNG, JPEG, GIF or WebP", field)
    try:
        # What the analyzer could not decode within its memory bound is refused here,
        # and every pixel is decoded once (bounded) so a truncated image never queues.
        info, image = header(raw)
        if info.decoded_bytes <= INLINE_DECODE_BYTES:
            decode_fully(image)
        else:
            await asyncio.to_thread(decode_fully, image)
    except ImageTooLargeError as exc:
        raise ApiError(413, "image_too_large", str(exc), field) from None
    except InvalidImageError as exc:
        raise ApiError(422, "invalid_image", str(exc), field) from None
    return raw


async def read_form(
    request: Request, settings: Settings, *, max_files: int, max_fields: int
) -> FormData:
    """The multipart body parsed, or a 400 ``malformed_multipart`` (or the cap's 413)."""
    try:
        return await request.form(
            max_files=max_files, max_fields=max_fields, max_part_size=settings.max_image_bytes + 1
        )
    except ApiError:
        raise  # the body is over the cap
    except Exception as exc:  # starlette raises HTTPException/MultiPartException subclasses
        detail = getattr(exc, "detail", None) or str(exc) or "malformed multipart body"
        raise ApiError(400, "malformed_multipart", str(detail), "body") from None


def idempotency_digest(request: Request) -> str | None:
    """The ``Idempotency-Key`` header's SHA-256 (hex), None without one; 400 if malformed."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isprintable():
        raise ApiError(
            400,
            "bad_request",
            "Idempotency-Key must be 1-255 printable characters",
            "idempotency-key",
        )
    return hashlib.sha256(key.encode()).hexdigest()


def idempotency_conflict() -> ApiError:
    """The 422 for an ``Idempotency-Key`` used before with another body."""
    return ApiError(
        422,
        "idempotency_conflict",
        "this Idempotency-Key was used with a different request body",
        "idempotency-key",
    )


async def _read_multipart(request: Request, settings: Settings) -> tuple[ScanCreate, bytes | None]:
    form = await read_form(request, settings, max_files=1, max_fields=16)
    try:
        fields: dict[str, Any] = {}
        image: bytes | None = None
        for name, value in form.multi_items():
            if name == "image":
                if not isinstance(value, UploadFile):
                    raise ApiError(422, "invalid_field", "image must be a file", "image")
                image = await check_image(await value.read(), settings, "image")
            elif name == "marketplaces":
                # Accept repeated fields and comma-separated lists alike.
                items = [m.strip() for m in str(value).split(",") if m.strip()]
                fields.setdefault("marketplaces", []).extend(items)
            elif isinstance(value, UploadFile):
                raise ApiError(422, "invalid_field", "unexpected file field", name)
            elif name == "delay_ms":
                fields[name] = form_int(value, name)
            else:
                fields[name] = value
    finally:
        await form.close()
    if "image_base64" in fields:
        raise ApiError(422, "invalid_field", "upload the file as `image`", "image_base64")
    scan = decode_json(msgspec.json.encode(fields))
    return scan, image


_FORM_INT = re.compile(r"[0-9]{1,15}")


def form_int(value: str, field: str) -> int:
    # Form values are all text; ASCII digits only (int() would take " 5", "٣" and "1_0").
    if _FORM_INT.fullmatch(value) is None:
        raise ApiError(422, "invalid_field", f"{field} must be a whole number", field)
    return int(value)


def check_source(scan: ScanCreate, image: bytes | None, settings: Settings) -> None:
    sources = sum(x is not None for x in (scan.image_url, image))
    if sources != 1:
        raise ApiError(
            422,
            "invalid_field",
            "give exactly one image source: image_url, image_base64 or an image file",
            "image",
        )
    if scan.image_url is not None:
        try:
            check_url(
                scan.image_url,
                allow_http=settings.image_url_allow_http,
                allow_hosts=frozenset(settings.image_url_allow_hosts),
            )
        except UnsafeURLError as exc:
            raise ApiError(422, "invalid_field", str(exc), "image_url") from None
