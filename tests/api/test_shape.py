"""The API's shape: routers at module level whose dependencies (``get_runtime``,
``get_account``) go through ``Depends`` — so ``app.dependency_overrides`` replaces them —,
explicit operation ids, and every error answered by one handler from its class's status."""

from __future__ import annotations

from fastapi.testclient import TestClient

from worker.api import deps
from worker.api.app import create_app
from worker.api.routers import files as file_routes
from worker.broker.actors import build_broker
from worker.core import errors
from worker.runtime import Runtime


def _app(settings):
    return create_app(Runtime(settings, broker=build_broker(settings)))


def test_the_account_dependency_can_be_overridden(settings, rclient):
    app = _app(settings)
    with TestClient(app) as http:
        assert http.get("/v1/files").status_code == 401  # no key: the real dependency
        app.dependency_overrides[deps.get_account] = lambda: "acme"
        assert http.get("/v1/files").json() == []  # no key needed: overridden
        assert http.get("/v1/files/nope/details").status_code == 404


def test_the_runtime_comes_from_app_state_and_can_be_overridden(settings, rclient):
    app = _app(settings)
    other = Runtime(settings.model_copy(update={"namespace": "elsewhere"}),
                    broker=build_broker(settings))
    calls = []

    def runtime() -> Runtime:
        calls.append(1)
        return other

    app.dependency_overrides[deps.get_account] = lambda: "acme"
    app.dependency_overrides[deps.get_runtime] = runtime
    with TestClient(app) as http:
        assert http.get("/v1/extworker/usage").status_code == 200
    assert calls, "the usage route did not take its runtime through get_runtime"
    assert app.state.runtime is not other


def test_every_route_names_its_operation_and_routers_are_module_level(settings, rclient):
    app = _app(settings)
    doc = app.openapi()
    ids = [op["operationId"] for path in doc["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids)) and "listFiles" in ids and "upload" in ids
    assert all("_api_v1_" not in i and "_v1_" not in i for i in ids), ids  # none generated
    assert any(r.path == "/v1/files" for r in file_routes.router.routes)


def test_each_error_answers_with_its_class_status_and_headers(settings, rclient):
    app = _app(settings)
    app.dependency_overrides[deps.get_account] = lambda: "acme"
    raised = [errors.NotFound("x: gone"), errors.Conflict("x: taken"),
              errors.Unauthorized("x: who"), errors.PermanentError("x: bad"),
              errors.Busy("x: later"), errors.TooLarge("x: big")]

    def boom(i: int) -> None:
        raise raised[i]

    app.router.add_api_route("/boom/{i}", boom)
    app.router.routes.insert(0, app.router.routes.pop())  # before delivery's catch-all
    with TestClient(app, raise_server_exceptions=False) as http:
        for i, exc in enumerate(raised):
            r = http.get(f"/boom/{i}")
            assert r.status_code == exc.status, (exc, r.status_code)
            assert r.json()["message"] == str(exc)
        assert http.get("/boom/4").headers["retry-after"] == "1"  # Busy's own header
