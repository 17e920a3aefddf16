"""Builders for the parts of the gateway's OpenAPI document that repeat: operations,
parameters, JSON answers and bodies (see :mod:`gateway.openapi`)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Literal, Protocol

Schema = dict[str, Any]

_REASONS = {
    400: "Malformed request (JSON, multipart, Content-Length, Idempotency-Key or a query "
    "parameter; `field` names it)",
    401: "Missing or unknown API key",
    404: "No such scan (or it belongs to another tenant, or it has expired); admin routes: "
    "the key is not an admin's",
    409: "The scan is in a state that does not allow this",
    413: "Body or image too large",
    415: "Unsupported body media type or image format",
    422: "A field is invalid; `field` names it",
    429: "Rate limit or daily quota reached for this key",
    503: "Redis is unreachable; retry shortly",
}
_RETRY_AFTER: Schema = {
    "description": "Seconds to wait",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}
_WWW_AUTHENTICATE: Schema = {"required": True, "schema": {"type": "string"}}
_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
_IMAGE_TYPES = "image/png, image/jpeg, image/gif, image/webp"


def ref(name: str) -> Schema:
    """A reference to the component schema ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


def answer(schema: Schema | str, description: str, headers: Schema | None = None) -> Schema:
    """A JSON response; ``schema`` a component's name or a schema."""
    response: Schema = {
        "description": description,
        "content": {
            "application/json": {"schema": ref(schema) if isinstance(schema, str) else schema}
        },
    }
    if headers:
        response["headers"] = headers
    return response


def ok(name: str, description: str, status: int = 200) -> dict[str, Schema]:
    """The one success answer of an operation: component ``name`` with ``status``."""
    return {str(status): answer(name, description)}


def parameter(
    where: Literal["path", "query", "header"],
    name: str,
    description: str,
    schema: Schema,
) -> Schema:
    """A parameter; only path parameters are required."""
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": schema,
    }


def json_body(name: str, *, required: bool = True) -> Schema:
    """A request body of component ``name`` as JSON."""
    return {"required": required, "content": {"application/json": {"schema": ref(name)}}}


def json_or_form_body(json_name: str, form_name: str) -> Schema:
    """A request body as JSON, or as multipart with the label image(s) as ``image`` file part(s)."""
    return {
        "required": True,
        "content": {
            "application/json": {"schema": ref(json_name)},
            "multipart/form-data": {
                "schema": ref(form_name),
                "encoding": {"image": {"contentType": _IMAGE_TYPES}},
            },
        },
    }


def error_answers(*codes: int) -> dict[str, Schema]:
    """ErrorBody responses for ``codes``, with the headers the gateway sends on each."""
    out: dict[str, Schema] = {}
    for code in sorted(codes):
        headers: Schema = {}
        if code == 401:
            headers["WWW-Authenticate"] = _WWW_AUTHENTICATE
        if code in (429, 503):
            headers["Retry-After"] = _RETRY_AFTER
        out[str(code)] = answer("ErrorBody", _REASONS[code], headers)
    return out


def operation(
    operation_id: str,
    summary: str,
    responses: dict[str, Schema],
    *,
    auth: bool | None,
    errors: Sequence[int] = (),
    parameters: Sequence[Schema] = (),
    body: Schema | None = None,
) -> Schema:
    """One operation of the document.

    ``auth`` None: a route outside /api/* (health, this document), open to all,
    answering only ``responses``. Otherwise an /api/* route: ErrorBody answers for
    429, 503 and ``errors`` besides ``responses`` (which win on a shared code), and
    with ``auth`` True the bearer scheme and a 401.
    """
    out: Schema = {"operationId": operation_id, "summary": summary}
    if parameters:
        out["parameters"] = list(parameters)
    if body is not None:
        out["requestBody"] = body
    out["responses"] = dict(responses)
    out["security"] = _BEARER if auth else []
    if auth is not None:
        codes = (*errors, 429, 503, *((401,) if auth else ()))
        for code, response in error_answers(*codes).items():
            out["responses"].setdefault(code, response)
    return out


class Api(Protocol):
    """:func:`operation` for the /api/* routes of one document (its ``auth`` bound)."""

    def __call__(
        self,
        operation_id: str,
        summary: str,
        responses: dict[str, Schema],
        *,
        errors: Sequence[int] = (),
        parameters: Sequence[Schema] = (),
        body: Schema | None = None,
    ) -> Schema: ...


def api_operations(auth: bool) -> Api:
    """The builder of /api/* operations: bearer and 401 when ``auth``."""
    return functools.partial(operation, auth=auth)
