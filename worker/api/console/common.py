"""What every console page shares: the templates, the session's account (a dependency),
the page and redirect answers with their headers, scoped lookups and signed URLs.

``Console`` is built once per app (``create_app``) and found on ``app.state.console``."""

# No `from __future__ import annotations`: FastAPI reads the dependencies' annotations.

import json
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from worker.api.console.session import COOKIE, Sessions, same_origin
from worker.core.errors import Forbidden, NotFound, PermanentError, SignInRequired
from worker.core.records import FileRecord
from worker.delivery.service import NO_EXPIRY, signature
from worker.runtime import Runtime
from worker.services import Services

PAGE = 48
SCAN_LIMIT = 5000  # records a search reads at most per page asked for


class Console:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.runtime: Runtime = services.runtime
        assert self.runtime.redis is not None  # sessions live in Redis
        self.sessions = Sessions(self.runtime.redis, self.runtime.settings.keys)
        self.urls = self.runtime.settings.urls
        self.env = Environment(loader=PackageLoader("worker.api.console", "templates"),
                               autoescape=select_autoescape(default=True,
                                                            default_for_string=True))
        self.env.filters["shown"] = shown

    def csp(self) -> str:
        origins = {urlsplit(self.urls.endpoint("x")).netloc}
        if self.urls.public_url_base:
            origins.add(urlsplit(self.urls.public_url_base).netloc)
        imgs = " ".join(f"http://{o} https://{o}" for o in sorted(origins))
        return (f"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' "
                f"data: {imgs}; connect-src 'self'; form-action 'self'; frame-ancestors "
                "'none'; base-uri 'none'")

    def page(self, request: Request, name: str, account: str | None, status: int = 200,
             **ctx: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(
            base=base_of(request), account=account,
            # A live page's background refresh (console.js) leaves the messages for the
            # next page the person opens.
            flashes=[] if request.headers.get("x-console-live") else
            self.sessions.take_flashes(request.cookies.get(COOKIE)),
            ext_names=self.extension_names(account) if account else {}, **ctx)
        return HTMLResponse(html, status_code=status, headers={
            "Content-Security-Policy": self.csp(), "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin", "Cache-Control": "no-store"})

    def extension_names(self, acct: str) -> dict[str, str]:
        """What a status calls each slot: a saved extension by its name, not its id."""
        return {f"saved-extension:{s['id']}": s["name"] for s in self.runtime.saved.list(acct)}

    def back(self, request: Request, to: str, text: str | None = None,
             kind: str = "ok") -> RedirectResponse:
        """Redirect to ``to`` (303), saying ``text`` there (``kind``: ``ok`` or ``error``)."""
        if text:
            self.sessions.flash(request.cookies.get(COOKIE), text, kind)
        return back(request, to)

    def signed(self, record: FileRecord, url: str) -> str:
        """``url`` as the SDKs sign it, for a private file the console shows its owner."""
        if not record.isPrivateFile:
            return url
        endpoint = self.urls.endpoint(record.accountId)
        signing = self.runtime.apikeys.signing_keys(record.accountId)
        if not signing or not url.startswith(endpoint + "/"):
            return url
        sig = signature(signing[0], url[len(endpoint) + 1:], NO_EXPIRY)
        return url + ("&" if "?" in url else "?") + f"ik-s={sig}"

    def owned(self, file_id: str, acct: str) -> FileRecord:
        record = self.runtime.files.get(file_id, acct)
        if record is None:
            raise NotFound(f"The requested file does not exist: {file_id}")
        return record


def base_of(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/") + "/console"


def back(request: Request, to: str) -> RedirectResponse:
    """A 303 to the console's ``to`` (messages: ``Console.back``)."""
    return RedirectResponse(base_of(request) + to, status_code=303)


def get_console(request: Request) -> Console:
    return request.app.state.console


ConsoleDep = Annotated[Console, Depends(get_console)]


def session_account(request: Request, console: ConsoleDep) -> str:
    """The session's account; unsafe methods from another origin: 403."""
    if request.method not in ("GET", "HEAD") and not same_origin(
            request.headers, request.headers.get("host", "")):
        raise Forbidden("cross-site request refused")
    found = console.sessions.account(request.cookies.get(COOKIE))
    if found is None:
        raise SignInRequired("sign in first")
    return found


Account = Annotated[str, Depends(session_account)]


def shown(value: Any) -> str:
    """A metadata value as a person reads it: a list as its items, a mapping as JSON."""
    if isinstance(value, list | tuple):
        return ", ".join(shown(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else str(value)


def number(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text  # the contract (or the field store) names it and says why
    return int(value) if value.is_integer() else value


def json_input(name: str, text: str) -> Any:
    """A form's JSON text, or a 400 naming the input."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise PermanentError(f"{name}: not JSON ({e.msg}, line {e.lineno})") from None
