"""What the API reads is bounded before anything parses it.

* ``BoundedRoute``: every JSON body goes through ``worker.core.jsonlimits`` (size, depth)
  instead of ``json.loads``, so JSON nested 100,000 deep is a 400 naming ``body``, never a
  ``RecursionError``; form fields holding JSON use ``json_field``.

FastAPI turns any exception raised while it reads a body into a generic 400, except
``HTTPException``s, which it passes on: ``BodyError`` is one, and the app's handler answers
it in the API's own error shape.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute

from worker.core import jsonlimits


class BodyError(HTTPException):
    """A body (or a JSON field of one) over a limit or malformed: 400 or 413."""


def json_field(name: str, raw: str | bytes, kind: type, max_bytes: int) -> Any:
    """A form field that holds JSON of ``kind`` (list or dict), decoded within the limits."""
    try:
        value = jsonlimits.loads(raw, name, max_bytes=max_bytes)
    except jsonlimits.JSONLimitError as e:
        raise BodyError(400, str(e)) from None
    if not isinstance(value, kind):
        raise BodyError(400, f"{name}: must be a JSON {'array' if kind is list else 'object'}")
    return value


def bounded_route(max_bytes: int) -> type[APIRoute]:
    """An ``APIRoute`` class whose requests decode JSON bodies with the bounded decoder."""

    class BoundedRequest(Request):
        async def json(self) -> Any:
            if not hasattr(self, "_json"):
                try:
                    self._json = jsonlimits.loads(await self.body(), "body",
                                                  max_bytes=max_bytes)
                except jsonlimits.JSONLimitError as e:
                    raise BodyError(400, str(e)) from None
            return self._json

    class BoundedRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def bounded(request: Request) -> Response:
                return await handler(BoundedRequest(request.scope, request.receive))

            return bounded

    return BoundedRoute
