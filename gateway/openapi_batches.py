"""The batch routes' part of the OpenAPI document (see :mod:`gateway.openapi`)."""

from __future__ import annotations

import msgspec

from gateway.openapi_ops import Api, Schema, answer, json_or_form_body, ok, parameter
from shared.schemas import BatchAccepted, BatchCancelled, BatchErrors, BatchRetried, BatchStatus
from shared.settings import Settings

STRUCTS: tuple[type[msgspec.Struct], ...] = (
    BatchAccepted,
    BatchStatus,
    BatchCancelled,
    BatchRetried,
    BatchErrors,
)

_BATCH_ID = parameter(
    "path",
    "batch_id",
    "A batch id as returned by POST /api/batches (32 lowercase hex digits).",
    {"type": "string", "pattern": "^[0-9a-f]{32}$"},
)


def components(settings: Settings, scan_create: Schema) -> dict[str, Schema]:
    """The request bodies of ``POST /api/batches``, beside the structs' own schemas."""
    item = {
        "type": "object",
        "description": "A scan as for POST /api/scans; fields missing here come from defaults.",
        "properties": scan_create["properties"],
        "additionalProperties": False,
    }
    form_fields = {k: v for k, v in scan_create["properties"].items() if k not in _NOT_IN_FORM}
    return {
        "BatchCreate": {
            "title": "BatchCreate",
            "type": "object",
            "description": "Body of ``POST /api/batches``: the scans, and fields every scan gets.",
            "properties": {
                "scans": {
                    "type": "array",
                    "items": item,
                    "minItems": 1,
                    "maxItems": settings.batch_max_scans,
                },
                "defaults": {
                    "anyOf": [item, {"type": "null"}],
                    "default": None,
                    "description": "Fields every scan gets unless it names them itself.",
                },
            },
            "required": ["scans"],
            "additionalProperties": False,
        },
        "BatchCreateForm": {
            "title": "BatchCreateForm",
            "type": "object",
            "description": "Body of ``POST /api/batches`` as multipart/form-data: one scan "
            "per `image` file, the other fields shared (product_name defaults to the file name).",
            "properties": {
                **form_fields,
                "image": {
                    "type": "array",
                    "items": {
                        "type": "string",
                        "format": "binary",
                        "contentMediaType": "application/octet-stream",
                    },
                    "minItems": 1,
                    "maxItems": settings.batch_max_scans,
                },
            },
            "required": ["image", "category", "marketplaces"],
            "additionalProperties": False,
        },
    }


_NOT_IN_FORM = ("image_base64", "image_url")


def paths(api: Api, idempotency_key: Schema) -> dict[str, Schema]:
    """The batch routes' operations, built by ``api`` (this document's auth)."""
    batch_id = [_BATCH_ID]
    location = {"Location": {"description": "Path of the batch", "schema": {"type": "string"}}}
    return {
        "/api/batches": {
            "post": api(
                "createBatch",
                "Submit many scans as one batch (all or none)",
                {
                    "200": answer(
                        "BatchAccepted", "Replay of an earlier Idempotency-Key", location
                    ),
                    "202": answer("BatchAccepted", "Every scan accepted and queued", location),
                    # An ErrorBody (as every error is), which for refused scans also lists
                    # them: BatchErrors.
                    "400": answer(
                        "ErrorBody",
                        "Malformed request, or some scans refused (`invalid_batch`): then the "
                        "body is a BatchErrors, whose `errors` names each refused scan by "
                        "index; nothing was written",
                    ),
                },
                errors=(413, 415, 422),
                parameters=[idempotency_key],
                body=json_or_form_body("BatchCreate", "BatchCreateForm"),
            )
        },
        "/api/batches/{batch_id}": {
            "get": api(
                "getBatch",
                "A batch's counts, progress, scan ids (paged) and, once finished, aggregate",
                ok("BatchStatus", "The batch"),
                errors=(404, 422),
                parameters=[
                    *batch_id,
                    parameter(
                        "query",
                        "cursor",
                        "Where the page of scan ids starts (a `next_cursor`).",
                        {"type": "integer", "minimum": 0, "default": 0},
                    ),
                    parameter(
                        "query",
                        "limit",
                        "Scan ids per page.",
                        {"type": "integer", "minimum": 1, "maximum": 1000},
                    ),
                ],
            ),
            "delete": api(
                "cancelBatch",
                "Cancel every scan of the batch that has not finished",
                ok("BatchCancelled", "What was cancelled, and the counts"),
                errors=(404,),
                parameters=batch_id,
            ),
        },
        "/api/batches/{batch_id}/retry": {
            "post": api(
                "retryBatch",
                "Replay the batch's failed scans with fresh attempts",
                ok("BatchRetried", "The scans queued again", 202),
                errors=(404,),
                parameters=batch_id,
            )
        },
    }
