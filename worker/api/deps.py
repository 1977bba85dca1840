"""What every route of the API depends on, through ``Depends``: the process's ``Runtime``
and ``Services`` (on ``app.state``, set once by ``create_app``) and the account a request
authenticates as. Tests may replace any of them with ``app.dependency_overrides``."""

# No `from __future__ import annotations`: FastAPI reads these annotations.

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from worker.core.errors import Unauthorized
from worker.delivery.service import Delivery
from worker.runtime import Runtime
from worker.services import Services
from worker.store.fields import FieldStore
from worker.store.library import Library
from worker.store.saved import SavedStore

BASIC = HTTPBasic(auto_error=False)
Credentials = Annotated[HTTPBasicCredentials | None, Depends(BASIC)]


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def get_services(request: Request) -> Services:
    return request.app.state.services


def get_delivery(request: Request) -> Delivery:
    return request.app.state.services.delivery


def get_library(request: Request) -> Library:
    return request.app.state.runtime.library


def get_saved(request: Request) -> SavedStore:
    return request.app.state.runtime.saved


def get_fields(request: Request) -> FieldStore:
    return request.app.state.runtime.fields


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
LibraryDep = Annotated[Library, Depends(get_library)]
SavedDep = Annotated[SavedStore, Depends(get_saved)]
FieldsDep = Annotated[FieldStore, Depends(get_fields)]
ServicesDep = Annotated[Services, Depends(get_services)]
DeliveryDep = Annotated[Delivery, Depends(get_delivery)]


def account_of(runtime: Runtime, creds: HTTPBasicCredentials | None) -> str:
    """The account of the private key sent as HTTP Basic's user name."""
    if creds is None or not creds.username:
        raise Unauthorized("Your request does not contain private API key.")
    found = runtime.apikeys.account_of(creds.username)
    if found is None:
        raise Unauthorized("Your account cannot be authenticated.")
    return found


def get_account(runtime: RuntimeDep, creds: Credentials) -> str:
    return account_of(runtime, creds)


Account = Annotated[str, Depends(get_account)]
