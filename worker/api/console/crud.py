"""The console's two form-edited collections (saved extensions, custom metadata fields)
through one helper: a list page with a create form, an edit page, update and delete, each
refusal shown on the form with what was typed (a 400), each success a redirect."""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations.

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from worker.api.console.common import Account, ConsoleDep, json_input
from worker.core.errors import NotFound, PermanentError
from worker.runtime import Runtime


@dataclass(frozen=True)
class Crud:
    path: str  # "/saved"
    template: str
    listed: str  # the template's name for the list
    noun: str  # in a 404: "saved extension not found: …"
    inputs: tuple[str, ...]  # the form's inputs; the first of `required` ones is the name
    required: tuple[str, ...]
    json_name: str  # the input holding JSON
    blank: dict[str, str]
    items: Callable[[Runtime, str], list[Any]]
    get: Callable[[Runtime, str, str], dict[str, Any] | None]
    create: Callable[[Runtime, str, dict[str, Any]], Any]
    update: Callable[[Runtime, str, str, dict[str, Any]], Any]
    delete: Callable[[Runtime, str, str], bool]
    form_of: Callable[[dict[str, Any]], dict[str, str]]
    done: Callable[[dict[str, str]], str]  # the success message
    # The form's own inputs (one per parameter) → the JSON value; the JSON textarea is used
    # instead when the form's "advanced" box is ticked. Raises PermanentError naming the input.
    build: Callable[[dict[str, str]], Any] | None = None

    def page(self, request: Request, console: Any, acct: str,
             editing: dict[str, Any] | None = None, form: dict[str, str] | None = None,
             error: str | None = None, status_code: int = 200) -> HTMLResponse:
        form = form or (self.form_of(editing) if editing else dict(self.blank))
        return console.page(request, self.template, acct, status=status_code,
                            **{self.listed: self.items(console.runtime, acct)},
                            editing=editing, form=form, form_error=error,
                            error_on=self.input_of(error, form) if error else None)

    def input_of(self, error: str, form: dict[str, str]) -> str:
        """Which input a refusal names (``config.maxTags: …`` → ``maxTags``); the JSON
        textarea when none of the form's own does."""
        if self.build is None or form.get("advanced"):
            return self.json_name
        head = error.split(":", 1)[0]
        for name in sorted(self.inputs, key=len, reverse=True):
            if name not in (self.json_name, "advanced") and (
                    head == name or head.endswith("." + name) or f" {name} " in f" {error} "):
                return name
        return self.json_name

    async def posted(self, request: Request, key: str | None) -> dict[str, str]:
        form = await request.form()
        got = {k: str(form[k]) for k in self.inputs if k in form}
        for name in self.required:
            if name not in got and not (key is not None and name == "name"):
                raise PermanentError(f"{name}: Field required")
        if key is not None and "name" not in got:
            got["name"] = key
        return {**{k: "" for k in self.inputs}, **got}

    def values(self, form: dict[str, str]) -> dict[str, Any]:
        if self.build is not None and not form.get("advanced"):
            return {**form, self.json_name: self.build(form)}
        return {**form, self.json_name: json_input(self.json_name, form[self.json_name])}

    def found(self, runtime: Runtime, acct: str, key: str) -> dict[str, Any]:
        item = self.get(runtime, acct, key)
        if item is None:
            raise NotFound(f"{self.noun} not found: {key}")
        return item

    def router(self) -> APIRouter:
        r = APIRouter()

        @r.get(self.path)
        def listing(request: Request, acct: Account, console: ConsoleDep) -> HTMLResponse:
            return self.page(request, console, acct)

        @r.post(self.path)
        async def create(request: Request, acct: Account, console: ConsoleDep) -> Response:
            form = await self.posted(request, None)
            try:
                self.create(console.runtime, acct, self.values(form))
            except (PermanentError, ValueError) as e:
                return self.page(request, console, acct, form=form, error=str(e),
                                 status_code=400)
            return console.back(request, self.path, self.done(form))

        @r.get(self.path + "/{key}")
        def edit(request: Request, acct: Account, console: ConsoleDep,
                 key: str) -> HTMLResponse:
            return self.page(request, console, acct,
                             editing=self.found(console.runtime, acct, key))

        @r.post(self.path + "/{key}")
        async def update(request: Request, acct: Account, console: ConsoleDep,
                         key: str) -> Response:
            item = self.found(console.runtime, acct, key)
            form = await self.posted(request, key)
            try:
                self.update(console.runtime, acct, key, self.values(form))
            except (PermanentError, ValueError) as e:
                return self.page(request, console, acct, editing=item, form=form,
                                 error=str(e), status_code=400)
            return console.back(request, self.path, self.done(form))

        @r.post(self.path + "/{key}/delete")
        def delete(request: Request, acct: Account, console: ConsoleDep, key: str) -> Response:
            if not self.delete(console.runtime, acct, key):
                raise NotFound(f"{self.noun} not found: {key}")
            return console.back(request, self.path, "Deleted.")

        return r
