"""A test-only extension that takes a while: for shutdown and redelivery tests.

Loaded through ``EXTWORKER_EXTRA_EXTENSIONS='["tests.support.slow_extension:Sleep"]'``,
the same path an operator's own handler takes.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from extensions.base import Extension, ExtensionContext, ExtensionResult
from worker.core.records import RecordPatch


class SleepParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Literal["sleep"]
    seconds: float = Field(1.0, ge=0, le=60)
    tag: str = "slept"


class Sleep(Extension):
    name = "sleep"
    queue = "extensions"
    params_model = SleepParams

    def run(self, ctx: ExtensionContext, params: SleepParams) -> ExtensionResult:
        # In steps: dramatiq's time limit is an exception raised in the thread, delivered
        # between Python bytecodes (one long C call, like time.sleep, is not cut short).
        end = time.monotonic() + params.seconds
        while time.monotonic() < end:
            time.sleep(min(0.05, max(0.0, end - time.monotonic())))
        return ExtensionResult(patch=RecordPatch(add_tags=[params.tag]),
                               output={"slept": params.seconds})


class MisbehaveParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Literal["misbehave"]
    mode: Literal["unserialisable-output", "unpatchable", "infrastructure"]


class _OneUnit(Extension):
    queue = "extensions"

    def units(self, params: BaseModel, settings: object) -> int:
        return 1


class Misbehave(_OneUnit):
    """Results the pipeline cannot record, or infrastructure errors that never clear."""

    name = "misbehave"
    params_model = MisbehaveParams

    def run(self, ctx: ExtensionContext, params: MisbehaveParams) -> ExtensionResult:
        from worker.core.errors import RetryableError

        if params.mode == "unserialisable-output":
            return ExtensionResult(output={"when": object()})
        if params.mode == "unpatchable":
            return ExtensionResult(patch=RecordPatch(set_fields={"fileId": "stolen"}))
        raise RetryableError("storage unavailable (simulated)")


class DieOnceParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Literal["die-once"]
    marker: str  # a file: absent → create it and SIGKILL this process after the "model" ran


class DieOnce(_OneUnit):
    """Makes a new version (a 1x1 PNG), costs 1 unit — and the first time, kills its own
    worker process (kill -9) after running, before the pipeline can commit."""

    name = "die-once"
    params_model = DieOnceParams

    def run(self, ctx: ExtensionContext, params: DieOnceParams) -> ExtensionResult:
        import io
        import os
        import signal
        from pathlib import Path

        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGBA", (1, 1)).save(buf, "PNG")
        marker = Path(params.marker)
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return ExtensionResult(new_version=buf.getvalue(), output={"survived": True})
