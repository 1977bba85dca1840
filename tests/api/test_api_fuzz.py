"""A bounded property-based run of ``schemathesis`` against ``/openapi.json``: whatever the
generated requests (valid or not, with a valid key), the API never answers 5xx.

Each operation gets a few dozen generated cases (``max_examples``), in process (ASGI),
on real Redis; the run stops by itself."""

from __future__ import annotations

import base64

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from worker.api.app import create_app
from worker.broker.actors import build_broker
from worker.runtime import Runtime
from worker.store.apikeys import ApiKeys
from worker.store.backends.redis_kv import RedisKV


@pytest.fixture
def api_app(settings, rclient):
    runtime = Runtime(settings, broker=build_broker(settings))
    key = ApiKeys(RedisKV(rclient), settings).create("fuzz")["key"]
    return create_app(runtime), key


def test_no_request_makes_the_api_fail(api_app):
    from hypothesis import given

    app, key = api_app
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    operations = explicit = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case) -> None:
            response = case.call(headers={"Authorization": auth})
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: "
                                f"{response.status_code} {response.text[:300]}")

        run()
        # Hostile cases, explicitly: JSON nested 100,000 deep in every JSON field and body.
        for case in _hostile_cases(operation):
            response = case.call(headers={"Authorization": auth})
            if response.status_code != 400 or "nested deeper" not in response.text:
                failures.append(f"{case.method} {case.formatted_path} (hostile): "
                                f"{response.status_code} {response.text[:300]}")
            explicit += 1
    assert operations >= 15 and explicit >= 8
    assert failures == []


def _hostile_cases(operation) -> list:
    """For an operation with a JSON body, that body nested 100,000 deep (sent as raw bytes);
    for the upload form, each of its JSON fields so."""
    deep = "[" * 100_000
    path_parameters = {p.name: "x" for p in operation.path_parameters}
    if operation.path == "/api/v1/files/upload":
        return [operation.Case(path_parameters=path_parameters, media_type="multipart/form-data",
                               body={"file": "aGk=", "fileName": "a.txt", field: deep})
                for field in ("extensions", "customMetadata")]
    if operation.body and any("json" in b.media_type for b in operation.body):
        return [operation.Case(path_parameters=path_parameters, media_type="application/json",
                               body=deep.encode())]
    return []


def test_openapi_reuses_the_job_contract(api_app):
    """The extension and file-details schemas in /openapi.json are the contract's own
    (generated from the installed extensions' params models), referenced, not copied."""
    app, _ = api_app
    from extensions.registry import Registry

    doc = app.openapi()
    contract = Registry.discover().contract.json_schema()
    schemas = doc["components"]["schemas"]
    assert set(contract["$defs"]) <= set(schemas)
    mapping = schemas["Extensions"]["items"]["discriminator"]["mapping"]
    assert set(mapping) == set(contract["properties"]["extensions"]["items"]["discriminator"]
                               ["mapping"])
    patch = doc["paths"]["/v1/files/{fileId}/details"]["patch"]["requestBody"]["content"]
    assert {"$ref": "#/components/schemas/Update"} in patch["application/json"]["schema"][
        "allOf"]
    form = schemas["Body_upload"]["properties"]["extensions"]
    assert form["contentSchema"] == {"$ref": "#/components/schemas/Extensions"}
