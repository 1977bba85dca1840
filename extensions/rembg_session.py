"""remove-bg models: one ONNX Runtime session per model, batched across concurrent jobs.

The model file comes from ``MODELS_DIR`` only (``extworker models pull``; never downloaded at
run time). Pre- and post-processing follow rembg's session classes family by family
(``RECIPES``: input size, mean/std, how the output becomes a mask);
``tests/extensions/test_rembg.py`` runs rembg's own ``predict`` next to ours for every family.

Micro-batching: concurrent ``mask`` calls in a process go through one ``MicroBatcher``, so N
jobs share one ``InferenceSession.run``. rembg's exports declare a fixed batch of 1, although
the graphs take any batch (shapes are computed, not baked in), so when batching is on the
graph's input/output batch dimension is renamed to a symbolic one in memory (``onnx``; the
file is untouched). A model whose graph really is fixed fails its first batched run: it is
then run one image at a time from there on, logged once.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from worker.core.errors import PermanentError
from worker.models.batching import MicroBatcher
from worker.models.catalog import require
from worker.models.devices import active_device, onnx_providers

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Recipe:
    """How rembg feeds one family of models and reads its output."""

    size: int  # square input, pixels
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    post: str  # "minmax" | "sigmoid-minmax" | "attire" (cloth classes 1-3 -> 255)


_U2NET = Recipe(320, IMAGENET_MEAN, IMAGENET_STD, "minmax")
_BIREFNET = Recipe(1024, IMAGENET_MEAN, IMAGENET_STD, "sigmoid-minmax")
RECIPES: dict[str, Recipe] = {
    "u2net": _U2NET, "u2netp": _U2NET, "u2net_human_seg": _U2NET, "silueta": _U2NET,
    "isnet-general-use": Recipe(1024, (0.5, 0.5, 0.5), (1.0, 1.0, 1.0), "minmax"),
    "isnet-anime": Recipe(1024, IMAGENET_MEAN, (1.0, 1.0, 1.0), "minmax"),
    "bria-rmbg": Recipe(1024, IMAGENET_MEAN, IMAGENET_STD, "minmax"),
    "u2net_cloth_seg": Recipe(768, IMAGENET_MEAN, IMAGENET_STD, "attire"),
    **{name: _BIREFNET for name in (
        "birefnet-general", "birefnet-general-lite", "birefnet-portrait", "birefnet-dis",
        "birefnet-hrsod", "birefnet-cod", "birefnet-massive")},
}


def prepare(im: Image.Image, size: int) -> Image.Image:
    """``im`` reduced to the model's square input: a cheap box reduce, then bilinear."""
    small = im
    factor = min(im.width // size, im.height // size)
    if factor >= 2:
        small = small.reduce(factor)  # box filter, very cheap
    small = small.resize((size, size), Image.Resampling.BILINEAR)
    return small if small.mode == "RGB" else small.convert("RGB")


def normalize(small: Image.Image, recipe: Recipe) -> np.ndarray:
    """rembg's ``BaseSession.normalize`` on an input already at size, in float32: scaled by
    the image's own maximum (as rembg does), then mean/std per channel; CHW."""
    arr = np.asarray(small, dtype=np.float32)
    arr = arr / max(float(arr.max()), 1e-6)
    arr = (arr - np.asarray(recipe.mean, np.float32)) / np.asarray(recipe.std, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def to_mask(output: np.ndarray, post: str) -> Image.Image:
    """One image's model output (C, H, W) as rembg turns it into a mask (mode L, H x W)."""
    if post == "attire":
        labels = np.argmax(output, axis=0)
        return Image.fromarray(np.where(labels > 0, 255, 0).astype(np.uint8), mode="L")
    pred = output[0].astype(np.float32)
    if post == "sigmoid-minmax":
        pred = 1 / (1 + np.exp(-pred))
    hi, lo = float(pred.max()), float(pred.min())
    pred = (pred - lo) / (hi - lo) if hi > lo else np.zeros_like(pred)
    return Image.fromarray((pred.clip(0, 1) * 255).astype(np.uint8), mode="L")


def mask_with(infer: Callable[[np.ndarray], np.ndarray], recipe: Recipe,
              im: Image.Image) -> Image.Image:
    """``im``'s subject mask (mode L, full size), the model reached through ``infer``."""
    mask = to_mask(infer(normalize(prepare(im, recipe.size), recipe)), recipe.post)
    if mask.size != im.size:
        mask = mask.resize(im.size, Image.Resampling.BILINEAR)
    return mask


def _dynamic_batch(path: Path) -> bytes | str:
    """The model with a symbolic batch dimension on its inputs and outputs, serialised; the
    path itself when ``onnx`` is missing or the model cannot be rewritten."""
    try:
        import onnx
    except ImportError:
        log.info("onnx not installed: %s runs one image at a time", path.name)
        return str(path)
    try:
        model = onnx.load(str(path))
        for value in (*model.graph.input, *model.graph.output):
            dims = value.type.tensor_type.shape.dim
            if len(dims) and dims[0].HasField("dim_value") and dims[0].dim_value == 1:
                dims[0].dim_param = "batch"
        return model.SerializeToString()  # type: ignore[no-any-return]
    except (ValueError, OSError) as e:  # e.g. a model over protobuf's 2 GB
        log.info("%s keeps its fixed batch axis (%s)", path.name, e)
        return str(path)


class RembgModel:
    """One remove-bg model on one device, shared by every thread of a process."""

    def __init__(self, name: str, models_dir: os.PathLike[str], device: str,
                 threads: int = 0, max_batch: int = 1, max_wait_ms: float = 0.0,
                 on_batch: Callable[[int], None] | None = None) -> None:
        """``threads``: ONNX Runtime's intra-op threads (0: its own default). ``max_batch``
        / ``max_wait_ms``: concurrent ``mask`` calls gathered into one run."""
        if name not in RECIPES:  # exactly the catalog's remove-bg models (tested)
            raise PermanentError(f"options.model: unknown remove-bg model {name!r}")
        path = require(name, Path(models_dir))
        providers, label = onnx_providers(device)
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:  # 0: ONNX Runtime's own default (sized from the cores it sees)
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        graph = _dynamic_batch(path) if max_batch > 1 else str(path)
        self.session = ort.InferenceSession(graph, sess_options=opts, providers=providers)
        self.name = name
        self.recipe = RECIPES[name]
        self.device = active_device(self.session, label)
        self.input_name = self.session.get_inputs()[0].name
        self._batched = max_batch > 1 and isinstance(graph, bytes)
        self._lock = threading.Lock()
        self.batcher: MicroBatcher[np.ndarray, np.ndarray] = MicroBatcher(
            self._run_batch, max_batch if self._batched else 1, max_wait_ms / 1000, on_batch)
        log.info("loaded rembg model %s on %s (batch up to %d)", name, self.device,
                 self.batcher.max_batch)

    def _run_one(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x[None]})[0][0]  # type: ignore[no-any-return]

    def _run_batch(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        if len(xs) == 1 or not self._batched:
            return [self._run_one(x) for x in xs]
        try:
            out = self.session.run(None, {self.input_name: np.stack(xs)})[0]
            return [out[i] for i in range(len(xs))]
        except Exception as batch_error:
            single = [self._run_one(x) for x in xs]  # raises if an input itself is bad
            with self._lock:
                if self._batched:
                    self._batched = False
                    log.warning("rembg model %s does not take a batch (%s); running one "
                                "image at a time", self.name, batch_error)
            return single

    def infer(self, x: np.ndarray) -> np.ndarray:
        """The model's raw output (C, H, W) for one normalised input (3, H, W)."""
        # Unbatched, threads run the session side by side (ONNX Runtime allows it).
        return self.batcher.submit(x) if self._batched else self._run_one(x)

    def mask(self, im: Image.Image) -> Image.Image:
        """The subject mask (mode L) at ``im``'s full size."""
        return mask_with(self.infer, self.recipe, im)

    def stats(self) -> dict[str, Any]:
        """Batch sizes run so far (for logs and tests)."""
        return {"batches": list(self.batcher.batches), "batched": self._batched}
