"""How each kind of model is loaded, keyed by its ``ModelRef`` in the ``ModelCache``.

One place for the cache keys, so extensions and the preload list agree.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from worker.core.settings import Settings
from worker.models.cache import ModelCache
from worker.models.devices import inference_threads
from worker.models.ref import ModelKind, ModelRef

KINDS = tuple(k.value for k in ModelKind)


def loader(ref: ModelRef, settings: Settings,
           on_batch: Callable[[str, int], None] | None = None) -> Callable[[], Any]:
    """How to load ``ref``; ``on_batch(name, size)`` sees its batches."""
    s, kind, name = settings, ref.kind, ref.name
    sizes = functools.partial(on_batch, name) if on_batch is not None else None
    if kind is ModelKind.REMOVE_BG:
        from .rembg_session import RembgModel

        return lambda: RembgModel(name, s.models_dir, s.device, inference_threads(s),
                                  s.batch_max_size, s.batch_max_wait_ms, sizes)
    if kind is ModelKind.IMAGENET:
        from .imagenet_tagger import ImageNetTagger

        return lambda: ImageNetTagger(name, s.models_dir, s.device, inference_threads(s),
                                      s.batch_max_size, s.batch_max_wait_ms, sizes)
    from .vision import Captioner, ImageClassifier, ZeroShotTagger

    cls = {ModelKind.CLASSIFIER: ImageClassifier, ModelKind.ZERO_SHOT: ZeroShotTagger,
           ModelKind.CAPTIONER: Captioner}[kind]
    return lambda: cls(name, s.models_dir, s.device, s.fp16, inference_threads(s),
                       s.batch_max_size, s.batch_max_wait_ms, sizes)


def get(models: ModelCache, kind: str, name: str, settings: Settings) -> Any:
    """The loaded model (loading it once per process if needed); with an inference process
    (``models.remote``), a proxy to the one it holds. ``ValueError`` for an unknown kind."""
    return get_ref(models, ModelRef.of(kind, name), settings)


def get_ref(models: ModelCache, ref: ModelRef, settings: Settings) -> Any:
    if models.remote is not None:
        from .remote import remote_model

        client = models.remote
        return models.get(ref, lambda: remote_model(ref, client))
    return models.get(ref, loader(ref, settings, models.on_batch))


def preload(models: ModelCache, settings: Settings) -> list[str]:
    """Load the settings' preload list (``<kind>:<name>`` entries); returns those loaded."""
    done = []
    for entry in settings.preload:
        get_ref(models, ModelRef.parse(entry), settings)
        done.append(entry)
    return done
