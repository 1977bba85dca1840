"""The interface every extension implements.

An extension is a class with a ``name`` (as the job names it), a ``queue``
(its resource class: ``"extensions"`` for model work, which GPU nodes
consume; ``"default"`` for light work), a pydantic ``params_model`` (the
extension object of the job) and ``run``. ``run`` gets the validated params
and a context (the file as it was when the job started, its bytes, the
settings and the model cache) and returns an ``ExtensionResult``: a record
patch and, optionally, the bytes of a new file version. It must not write
anything itself — the pipeline commits the result, the units and the status
together.

Raise ``PermanentError`` for input that can never work (the extension ends
``failed`` with your message) and ``RetryableError`` for infrastructure
trouble (the message is retried).

A third-party extension is a package that declares::

    [project.entry-points."extworker.extensions"]
    my-ext = "my_package.module:MyExtension"
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from worker.core.records import FileRecord, RecordPatch

if TYPE_CHECKING:
    from worker.core.settings import Settings
    from worker.models.cache import ModelCache
    from worker.store.fields import CustomField


@dataclass
class ExtensionContext:
    settings: Settings
    models: ModelCache
    job_id: str
    account_id: str
    record: FileRecord
    read_source: Callable[[], bytes]  # bytes of the file's current version
    fetch: Callable[[str], bytes]  # a guarded remote fetch (timeouts, size cap)
    custom_fields: Callable[[], dict[str, CustomField]] = dict  # the account's metadata fields


@dataclass
class ExtensionResult:
    patch: RecordPatch = field(default_factory=RecordPatch)
    new_version: bytes | None = None  # bytes of a new file version, if any
    new_version_mime: str = "image/png"
    new_version_ext: str = "png"
    output: dict[str, Any] = field(default_factory=dict)  # for logs and `--wait`
    model: str | None = None
    device: str | None = None
    # An L2-normalised image embedding of the file's current version (for similar images).
    embedding: list[float] | None = None


class Extension:
    """Base class; subclasses set the class attributes and implement ``run``."""

    name: ClassVar[str]
    queue: ClassVar[str] = "extensions"
    params_model: ClassVar[type[BaseModel]]
    # Whether the HTTP API may answer it in an upload's response (the hosted service
    # "first tries synchronously" only auto-tagging); otherwise always `pending` + webhook.
    synchronous: ClassVar[bool] = False

    @classmethod
    def available(cls) -> bool:
        """Whether this process can run it (its optional dependencies are installed).
        Unavailable extensions fail with "not available in this deployment"."""
        return True

    def units(self, params: BaseModel, settings: Settings) -> int:
        """Units one successful run costs (default: the settings' cost for ``name``)."""
        return settings.unit_cost(self.name)

    def run(self, ctx: ExtensionContext, params: Any) -> ExtensionResult:
        raise NotImplementedError
