"""Turning a ``POST /api/batches`` request into validated scans, or every refusal at once.

Each scan is checked exactly as ``POST /api/scans`` checks one (the same decoder,
image checks, URL guard and schedule rules); what would be a 4xx there becomes
one entry of the batch's ``errors``, so a client fixes them all in one round.
"""

from __future__ import annotations

import hashlib
from pathlib import PurePath
from typing import Any

import msgspec
from starlette.datastructures import UploadFile
from starlette.requests import Request

from gateway.intake import (
    capped,
    check_image,
    check_source,
    decode_base64,
    decode_json,
    due_at_ms,
    form_int,
    invalid,
    read_form,
)
from shared.http.errors import ApiError
from shared.schemas import ItemError, ScanCreate
from shared.settings import Settings

_encode = msgspec.json.Encoder().encode


class InvalidBatchError(ApiError):
    """A batch refused as a whole, with every scan's reason (nothing was written)."""

    def __init__(self, errors: list[ItemError]) -> None:
        super().__init__(400, "invalid_batch", f"{len(errors)} scans were refused", "scans")
        self.errors = errors


class BatchBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /api/batches`` (JSON): the scans, and fields every scan gets."""

    scans: list[msgspec.Raw]
    defaults: dict[str, Any] | None = None


class Scan(msgspec.Struct, frozen=True, kw_only=True):
    """One validated scan of a batch."""

    scan: ScanCreate
    image: bytes | None
    due_ms: int


_decode_body = msgspec.json.Decoder(BatchBody).decode
_decode_fields = msgspec.json.Decoder(dict[str, Any]).decode


async def read_batch(request: Request, settings: Settings) -> list[Scan]:
    """Parse and validate a batch; ApiError for the request, InvalidBatchError for its scans."""
    limit = settings.batch_max_body_bytes
    raw_length = request.headers.get("content-length")
    if raw_length is not None:
        if not raw_length.isascii() or not raw_length.isdigit():
            raise ApiError(400, "bad_request", "invalid Content-Length", "content-length")
        if int(raw_length) > limit:
            raise ApiError(413, "too_large", f"body exceeds {limit} bytes", "body")
    request = capped(request, limit)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "application/json":
        return await _read_json(await request.body(), settings)
    if media_type == "multipart/form-data":
        return await _read_multipart(request, settings)
    raise ApiError(
        415,
        "unsupported_media_type",
        "send application/json or multipart/form-data",
        "content-type",
    )


def _check_count(count: int, settings: Settings) -> None:
    if not 1 <= count <= settings.batch_max_scans:
        raise ApiError(
            422,
            "invalid_field",
            f"a batch holds 1 to {settings.batch_max_scans} scans, not {count}",
            "scans",
        )


def _no_callback() -> ApiError:
    # One callback secret per scan would mean hundreds of secrets in one answer; a
    # tenant's endpoints get every scan of the batch and its end (``batch.completed``).
    return ApiError(
        422,
        "invalid_field",
        "a batch's scans take no callback_url: register a webhook endpoint "
        "(POST /api/webhooks) for scan.* and batch.completed events",
        "callback_url",
    )


def _item_error(index: int, exc: ApiError) -> ItemError:
    return ItemError(index=index, field=exc.field, reason=exc.detail)


async def _read_json(body: bytes, settings: Settings) -> list[Scan]:
    try:
        batch = _decode_body(body)
    except msgspec.ValidationError as exc:
        raise invalid(exc) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "malformed_json", str(exc), "body") from None
    _check_count(len(batch.scans), settings)
    if batch.defaults and batch.defaults.get("callback_url") is not None:
        raise _no_callback()
    scans: list[Scan] = []
    errors: list[ItemError] = []
    for index, raw in enumerate(batch.scans):
        try:
            if batch.defaults:
                fields = _decode_fields(raw)
                scan = decode_json(_encode({**batch.defaults, **fields}))
            else:
                scan = decode_json(raw)
            if scan.callback_url is not None:
                raise _no_callback()
            image = await decode_base64(scan.image_base64, settings) if scan.image_base64 else None
            scans.append(_checked(scan, image, settings))
        except msgspec.DecodeError:
            errors.append(ItemError(index=index, field=None, reason="a scan must be an object"))
        except ApiError as exc:
            if exc.field == "callback_url":
                raise  # the whole batch's mistake, not one scan's
            errors.append(_item_error(index, exc))
    if errors:
        raise InvalidBatchError(errors)
    return scans


def _checked(scan: ScanCreate, image: bytes | None, settings: Settings) -> Scan:
    check_source(scan, image, settings)
    return Scan(
        scan=msgspec.structs.replace(scan, image_base64=None),
        image=image,
        due_ms=due_at_ms(scan, settings),
    )


async def _read_multipart(request: Request, settings: Settings) -> list[Scan]:
    form = await read_form(request, settings, max_files=settings.batch_max_scans + 1, max_fields=32)
    try:
        shared, files = _split_form(form.multi_items())
        _check_count(len(files), settings)
        scans: list[Scan] = []
        errors: list[ItemError] = []
        for index, upload in enumerate(files):
            try:
                fields = dict(shared)
                # A file's own name (without its extension) names the product by default.
                fields.setdefault("product_name", PurePath(upload.filename or "").stem or "label")
                scan = decode_json(_encode(fields))
                image = await check_image(await upload.read(), settings, "image")
                scans.append(_checked(scan, image, settings))
            except ApiError as exc:
                errors.append(_item_error(index, exc))
    finally:
        await form.close()
    if errors:
        raise InvalidBatchError(errors)
    return scans


def _split_form(
    parts: list[tuple[str, UploadFile | str]],
) -> tuple[dict[str, Any], list[UploadFile]]:
    """The fields every scan shares, and the image files in order."""
    shared: dict[str, Any] = {}
    files: list[UploadFile] = []
    for name, value in parts:
        if name == "image":
            if not isinstance(value, UploadFile):
                raise ApiError(422, "invalid_field", "image must be a file", "image")
            files.append(value)
        elif isinstance(value, UploadFile):
            raise ApiError(422, "invalid_field", "unexpected file field", name)
        elif name == "marketplaces":
            items = [m.strip() for m in str(value).split(",") if m.strip()]
            shared.setdefault("marketplaces", []).extend(items)
        elif name == "delay_ms":
            shared[name] = form_int(value, name)
        elif name == "callback_url":
            raise _no_callback()
        elif name in ("image_base64", "image_url"):
            raise ApiError(422, "invalid_field", "upload each image as an `image` file", name)
        else:
            shared[name] = value
    return shared, files


def body_hash(scans: list[Scan], tenant: str) -> str:
    """What an idempotent replay must repeat: every scan as validated, its image and the tenant.

    Not the raw body: a multipart boundary differs on every send of the same files.
    """
    digest = hashlib.sha256(tenant.encode())
    for item in scans:
        digest.update(_encode(item.scan))
        digest.update(hashlib.sha256(item.image or b"").digest())
    return digest.hexdigest()
