"""The batch routes' part of the OpenAPI document (see :mod:`gateway.openapi`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from shared.schemas import BatchAccepted, BatchCancelled, BatchErrors, BatchRetried, BatchStatus
from shared.settings import Settings

Schema = dict[str, Any]

STRUCTS: tuple[type[msgspec.Struct], ...] = (
    BatchAccepted,
    BatchStatus,
    BatchCancelled,
    BatchRetried,
    BatchErrors,
)

_BATCH_ID: Schema = {
    "name": "batch_id",
    "in": "path",
    "required": True,
    "description": "A batch id as returned by POST /api/batches (32 lowercase hex digits).",
    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


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


def paths(api: Callable[..., Schema], idempotency_key: Schema) -> dict[str, Schema]:
    """The batch routes' operations; ``api`` is :func:`gateway.openapi._api` for this auth."""
    batch_id = [_BATCH_ID]
    location = {"Location": {"description": "Path of the batch", "schema": {"type": "string"}}}
    # An ErrorBody (as every error is), which for refused scans also lists them: BatchErrors.
    bad_batch = _json(
        _ref("ErrorBody"),
        "Malformed request, or some scans refused (`invalid_batch`): then the body is a "
        "BatchErrors, whose `errors` names each refused scan by index; nothing was written",
    )
    return {
        "/api/batches": {
            "post": api(
                "Submit many scans as one batch (all or none)",
                {
                    "200": {
                        **_json(_ref("BatchAccepted"), "Replay of an earlier Idempotency-Key"),
                        "headers": location,
                    },
                    "202": {
                        **_json(_ref("BatchAccepted"), "Every scan accepted and queued"),
                        "headers": location,
                    },
                    "400": bad_batch,
                },
                413,
                415,
                422,
                operationId="createBatch",
                parameters=[idempotency_key],
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {"schema": _ref("BatchCreate")},
                        "multipart/form-data": {
                            "schema": _ref("BatchCreateForm"),
                            "encoding": {
                                "image": {
                                    "contentType": "image/png, image/jpeg, image/gif, image/webp"
                                }
                            },
                        },
                    },
                },
            )
        },
        "/api/batches/{batch_id}": {
            "get": api(
                "A batch's counts, progress, scan ids (paged) and, once finished, aggregate",
                {"200": _json(_ref("BatchStatus"), "The batch")},
                404,
                422,
                operationId="getBatch",
                parameters=[
                    *batch_id,
                    {
                        "name": "cursor",
                        "in": "query",
                        "required": False,
                        "description": "Where the page of scan ids starts (a `next_cursor`).",
                        "schema": {"type": "integer", "minimum": 0, "default": 0},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "description": "Scan ids per page.",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                ],
            ),
            "delete": api(
                "Cancel every scan of the batch that has not finished",
                {"200": _json(_ref("BatchCancelled"), "What was cancelled, and the counts")},
                404,
                operationId="cancelBatch",
                parameters=batch_id,
            ),
        },
        "/api/batches/{batch_id}/retry": {
            "post": api(
                "Replay the batch's failed scans with fresh attempts",
                {"202": _json(_ref("BatchRetried"), "The scans queued again")},
                404,
                operationId="retryBatch",
                parameters=batch_id,
            )
        },
    }
