"""The API's errors, in the hosted shape: ``{"message", "help"}`` with a 4xx/5xx code."""

from __future__ import annotations

from fastapi.responses import JSONResponse

HELP = "For support see the extworker README (the HTTP API section)."


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None
                 ) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"message": message, "help": HELP}, status_code=status,
                        headers=headers)
