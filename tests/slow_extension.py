"""A test-only extension that takes a while: for shutdown and redelivery tests.

Loaded through ``EXTWORKER_EXTRA_EXTENSIONS='["tests.slow_extension:Sleep"]'``,
the same path an operator's own handler takes.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from extensions.base import Extension, ExtensionContext, ExtensionResult
from worker.records import RecordPatch


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
        time.sleep(params.seconds)
        return ExtensionResult(patch=RecordPatch(add_tags=[params.tag]),
                               output={"slept": params.seconds})
