"""How each kind of model is loaded, keyed ``"<kind>:<name>"`` in the ``ModelCache``.

One place for the cache keys, so extensions and the preload list agree.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from worker.core.settings import Settings
from worker.models.cache import ModelCache
from worker.models.devices import inference_threads

KINDS = ("remove-bg", "imagenet", "classifier", "zero-shot", "captioner")


def loader(kind: str, name: str, settings: Settings,
           on_batch: Callable[[str, int], None] | None = None) -> Callable[[], Any]:
    """How to load model ``name`` of ``kind``; ``on_batch(name, size)`` sees its batches."""
    s = settings
    sizes = functools.partial(on_batch, name) if on_batch is not None else None
    if kind == "remove-bg":
        from .rembg_session import RembgModel

        return lambda: RembgModel(name, s.models_dir, s.device, inference_threads(s),
                                  s.batch_max_size, s.batch_max_wait_ms, sizes)
    if kind == "imagenet":
        from .imagenet_tagger import ImageNetTagger

        return lambda: ImageNetTagger(name, s.models_dir, s.device, inference_threads(s),
                                      s.batch_max_size, s.batch_max_wait_ms, sizes)
    from .vision import Captioner, ImageClassifier, ZeroShotTagger

    cls = {"classifier": ImageClassifier, "zero-shot": ZeroShotTagger,
           "captioner": Captioner}.get(kind)
    if cls is None:
        raise ValueError(f"unknown model kind {kind!r}; kinds: {', '.join(KINDS)}")
    return lambda: cls(name, s.models_dir, s.device, s.fp16, inference_threads(s),
                       s.batch_max_size, s.batch_max_wait_ms, sizes)


def get(models: ModelCache, kind: str, name: str, settings: Settings) -> Any:
    """The loaded model (loading it once per process if needed); with an inference process
    (``models.remote``), a proxy to the one it holds."""
    if models.remote is not None:
        if kind not in KINDS:
            raise ValueError(f"unknown model kind {kind!r}; kinds: {', '.join(KINDS)}")
        from .remote import remote_model

        client = models.remote
        return models.get(f"{kind}:{name}", lambda: remote_model(kind, name, client))
    return models.get(f"{kind}:{name}", loader(kind, name, settings, models.on_batch))


def preload(models: ModelCache, settings: Settings) -> list[str]:
    """Load the settings' preload list; returns the keys loaded."""
    done = []
    for key in settings.preload:
        kind, _, name = key.partition(":")
        get(models, kind, name, settings)
        done.append(key)
    return done
