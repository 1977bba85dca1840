"""What the API reads is bounded before anything parses it.

* ``BoundedRoute``: every JSON body goes through ``worker.core.jsonlimits`` (size, depth)
  instead of ``json.loads``, so JSON nested 100,000 deep is a 400 naming ``body``, never a
  ``RecursionError``; form fields holding JSON use ``jsonlimits.field``. The limit is the
  app's settings' (``EXTWORKER_API_MAX_BODY_BYTES``), read per request from ``app.state``.

FastAPI turns any exception raised while it reads a body into a generic 400, except
``HTTPException``s, which it passes on: ``BodyError`` is one (and in the service's error
tree), and the app's one handler answers it in the API's own shape.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute

from worker.core import jsonlimits
from worker.core.errors import ErrorCode, PermanentError


class BodyError(HTTPException, PermanentError):
    """A body over a limit or malformed, met while FastAPI reads it: 400 or 413."""

    code = ErrorCode.INVALID_BODY

    def __init__(self, status_code: int, detail: str) -> None:
        HTTPException.__init__(self, status_code, detail)
        self.status = int(status_code)  # type: ignore[misc]  # a value, not a collaborator


class BoundedRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            max_bytes = self.app.state.runtime.settings.api_max_body_bytes
            try:
                self._json = jsonlimits.loads(await self.body(), "body", max_bytes=max_bytes)
            except jsonlimits.JSONLimitError as e:
                raise BodyError(400, str(e)) from None
        return self._json


class BoundedRoute(APIRoute):
    """An ``APIRoute`` whose requests decode JSON bodies with the bounded decoder (every
    router of the API uses it)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def bounded(request: Request) -> Response:
            return await handler(BoundedRequest(request.scope, request.receive))

        return bounded
