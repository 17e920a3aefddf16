"""The OpenAPI document: valid OpenAPI 3.1, covers every route, matches what the gateway sends."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import msgspec
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from starlette.routing import Route

from gateway.app import create_app
from gateway.openapi import openapi_document
from shared.schemas import ErrorBody, ScanCreate
from shared.settings import Secret, Settings
from tests.conftest import SettingsFactory
from tests.support.images import label_png
from tests.support.servers import serve

KEY = "key-a-0123456789abcdef"


def secured(make_settings: SettingsFactory) -> Settings:
    """Settings with auth on (one tenant)."""
    return make_settings(auth=True, api_keys=(("a", Secret(KEY)),), event_keys=(Secret("e" * 40),))


def operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    """Every documented (path, METHOD)."""
    return {(path, method.upper()) for path, item in document["paths"].items() for method in item}


def validator(document: dict[str, Any], name: str) -> Draft202012Validator:
    """A JSON Schema validator for the component ``name`` of ``document``."""
    return Draft202012Validator(
        {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    )


def test_document_is_valid_openapi_3_1(make_settings: SettingsFactory) -> None:
    """openapi-spec-validator accepts the document, with auth off and on."""
    for settings in (make_settings(), secured(make_settings)):
        document = openapi_document(settings)
        assert document["openapi"] == "3.1.0"
        validate(document, cls=OpenAPIV31SpecValidator)
        # And it survives a JSON round trip unchanged (no tuples, no non-JSON values).
        assert msgspec.json.decode(msgspec.json.encode(document)) == document


def test_every_route_is_documented_and_every_operation_routed(settings: Settings) -> None:
    """The app's routes (less HEAD) and the document's operations are the same set."""
    routed = set()
    for route in create_app(settings).routes:
        assert isinstance(route, Route), route
        routed |= {(route.path, method) for method in (route.methods or set()) - {"HEAD"}}
    assert routed == operations(openapi_document(settings))


def test_every_error_answer_is_an_error_body(make_settings: SettingsFactory) -> None:
    """Every 4xx/5xx of /api/* is documented as ErrorBody; 401 only when auth is on."""
    for settings in (make_settings(), secured(make_settings)):
        document = openapi_document(settings)
        for path, item in document["paths"].items():
            for method, operation in item.items():
                codes = {int(code) for code in operation["responses"]}
                if not path.startswith("/api/"):
                    continue
                assert {429, 503} <= codes, (method, path)
                assert (401 in codes) is settings.auth, (method, path)
                for code, response in operation["responses"].items():
                    if int(code) >= 400:
                        schema = response["content"]["application/json"]["schema"]
                        assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (path, code)


def test_security_follows_the_auth_setting(make_settings: SettingsFactory) -> None:
    """Auth on: bearer on every /api/* operation, none on health; auth off: none anywhere."""
    on, off = openapi_document(secured(make_settings)), openapi_document(make_settings())
    assert on["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key of LABELSCAN_API_KEYS",
    }
    for document, auth in ((on, True), (off, False)):
        for path, item in document["paths"].items():
            for operation in item.values():
                expected: list[dict[str, list[str]]] = (
                    [{"bearer": []}] if auth and path.startswith("/api/") else []
                )
                assert operation["security"] == expected, path


def test_post_scans_documents_both_encodings_and_idempotency(settings: Settings) -> None:
    """POST /api/scans takes JSON ScanCreate or multipart with an image file; 200 and 202."""
    document = openapi_document(settings)
    post = document["paths"]["/api/scans"]["post"]
    content = post["requestBody"]["content"]
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/ScanCreate"}
    form = document["components"]["schemas"]["ScanCreateForm"]
    assert form["properties"]["image"]["format"] == "binary"
    assert "image_base64" not in form["properties"]
    assert set(form["properties"]) - {"image"} == set(ScanCreate.__struct_fields__) - {
        "image_base64"
    }
    assert {"200", "202", "400", "413", "415", "422"} <= set(post["responses"])
    assert [p["name"] for p in post["parameters"]] == ["Idempotency-Key"]
    dead = document["paths"]["/api/dead"]["get"]
    count = next(p for p in dead["parameters"] if p["name"] == "count")
    assert (count["schema"]["minimum"], count["schema"]["maximum"]) == (1, 500)


def test_struct_schemas_match_the_structs(settings: Settings) -> None:
    """A body the gateway accepts validates against ScanCreate; bad ones do not."""
    document = openapi_document(settings)
    good = {
        "category": "toys",
        "marketplaces": ["US"],
        "product_name": "Blocks",
        "image_base64": base64.b64encode(b"x").decode(),
        "run_at": "2030-01-01T00:00:00Z",
    }
    msgspec.convert(good, ScanCreate, strict=False)
    create = validator(document, "ScanCreate")
    assert not list(create.iter_errors(good))
    for bad in (
        {**good, "category": "weapons"},
        {**good, "colour": "red"},
        {**good, "marketplaces": []},
        {**good, "tenant": "a b"},
    ):
        assert list(create.iter_errors(bad)), bad
    error = msgspec.to_builtins(ErrorBody(error="e", detail="d", field=None))
    assert not list(validator(document, "ErrorBody").iter_errors(error))


async def test_served_document_and_answers_match_it(make_settings: SettingsFactory) -> None:
    """GET /openapi.json serves the document; real 202, 200 and 4xx bodies validate against it."""
    settings = secured(make_settings)
    document = openapi_document(settings)
    body = {
        "category": "toys",
        "marketplaces": ["US"],
        "product_name": "Blocks",
        "image_base64": base64.b64encode(label_png()).decode(),
    }
    auth = {"authorization": f"Bearer {KEY}"}
    async with (
        serve(create_app(settings)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
    ):
        served = await http.get("/openapi.json")
        accepted = await http.post("/api/scans", json=body, headers=auth)
        detail = await http.get(f"/api/scans/{accepted.json()['scan_id']}", headers=auth)
        stats = await http.get("/api/queue/stats", headers=auth)
        unauthorized = await http.get("/api/dead")
        invalid = await http.post("/api/scans", json={**body, "category": "x"}, headers=auth)
    assert served.status_code == 200
    assert served.headers["content-type"] == "application/json"
    assert served.json() == document
    for response, name in (
        (accepted, "ScanAccepted"),
        (detail, "ScanDetail"),
        (stats, "QueueStats"),
        (unauthorized, "ErrorBody"),
        (invalid, "ErrorBody"),
    ):
        assert not list(validator(document, name).iter_errors(response.json())), (
            name,
            response.text,
        )
    assert (accepted.status_code, unauthorized.status_code, invalid.status_code) == (202, 401, 422)
