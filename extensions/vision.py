"""Local vision models (transformers/torch), loaded offline from ``MODELS_DIR``.

Each class wraps one kind of model behind ``load`` (in ``__init__``) and one
predict method; the extensions choose a class by setting and get instances
from the process's ``ModelCache`` (loaded once, thread-safe, unloaded when
idle). Everything loads with ``HF_HUB_OFFLINE=1`` and ``local_files_only``:
a model that is not in ``MODELS_DIR/hf/<name>`` is a ``ModelMissing`` error
naming ``extworker models pull``.

* ``ImageClassifier`` — ``AutoModelForImageClassification`` (ViT, ConvNeXt…):
  softmax over its labels.
* ``ZeroShotTagger`` — a CLIP-style dual encoder (CLIP, SigLIP) scoring an
  image against a vocabulary of labels; the vocabulary's text embeddings are
  computed once per vocabulary and cached.
* ``Captioner`` — an image-to-text model (BLIP, GIT, ViT-GPT2) generating a
  caption, cleaned to one sentence.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from worker.core import video
from worker.core.errors import ErrorCode, PermanentError
from worker.core.imaging import open_image
from worker.core.video import looks_like_video
from worker.models.batching import MicroBatcher
from worker.models.catalog import require
from worker.models.devices import torch_device

from .base import Extension

if TYPE_CHECKING:
    from worker.core.settings import Settings

log = logging.getLogger(__name__)


def vision_available() -> bool:
    """torch and transformers are installed (the ``vision`` extra)."""
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))


class VisionExtension(Extension):
    """Base of the extensions that run these models: model work, vision extra required."""

    queue = "extensions"

    @classmethod
    def available(cls) -> bool:
        return vision_available()

    @staticmethod
    def images(data: bytes, settings: Settings, decode_side: int = 0) -> list[Image.Image]:
        """What the model looks at: the file's image (decoded only as large as the model
        uses), or a video's keyframes — ``EXTWORKER_VIDEO_KEYFRAMES`` spread over its
        duration (the hosted service tags images only; here a video is tagged too)."""
        if looks_like_video(data[:16]) and video.available():
            frames = video.keyframes(data, settings.video_keyframes)
            if not frames:
                raise PermanentError("the video has no frame that can be decoded",
                                     code=ErrorCode.INVALID_IMAGE)
            return frames
        return [open_image(data, settings.max_image_pixels, decode_side)]


def _offline() -> None:
    # Belt and braces: the environment says offline *and* every call passes
    # local_files_only, so nothing can reach a hub at run time.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


class VisionModel:
    """Common loading: path, device, dtype, inference mode."""

    def __init__(self, name: str, models_dir: Path, device: str, fp16: bool = True,
                 threads: int = 0, max_batch: int = 1, max_wait_ms: float = 0.0,
                 on_batch: Callable[[int], None] | None = None) -> None:
        """``max_batch``/``max_wait_ms``: concurrent calls in this process are gathered
        into batches of up to ``max_batch``, waiting at most ``max_wait_ms`` for company."""
        self.max_batch, self.max_wait_s = max_batch, max_wait_ms / 1000
        self.on_batch = on_batch  # each batch's size (a metric)
        _offline()
        import torch

        self.name = name
        self.path = require(name, models_dir)
        self.device = torch_device(device)
        if threads:  # on every device: a GPU node's CPUs preprocess, and are shared too
            torch.set_num_threads(threads)  # process-wide; every model gets the same budget
        self.dtype = torch.float16 if (fp16 and self.device.startswith("cuda")) else torch.float32
        self.torch = torch
        self._lock = threading.Lock()
        t0 = time.perf_counter()
        self._load()
        self.load_seconds = time.perf_counter() - t0
        log.info("loaded %s (%s) on %s in %.2fs", name, type(self).__name__, self.device,
                 self.load_seconds)

    def _load(self) -> None:
        raise NotImplementedError

    @property
    def decode_side(self) -> int:
        """Pixels per side worth decoding for this model: twice its input side (the
        processor then resizes from at least 2x), 0 (full size) when it is not known."""
        processor = getattr(self, "processor", None)
        size = getattr(getattr(processor, "image_processor", processor), "size", None)
        sides = [v for v in (size or {}).values() if isinstance(v, int)] if isinstance(
            size, dict) else [size] if isinstance(size, int) else []
        return 2 * max(sides) if sides else 0

    def _to_device(self, model: Any) -> Any:
        return model.to(self.device, dtype=self.dtype).eval()

    def _pixels(self, processor: Any, images: Image.Image | list[Image.Image]) -> Any:
        batch = [im.convert("RGB") for im in (images if isinstance(images, list) else [images])]
        px = processor(images=batch, return_tensors="pt")["pixel_values"]
        return px.to(self.device, dtype=self.dtype)


class ImageClassifier(VisionModel):
    def _load(self) -> None:
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        self.processor = AutoImageProcessor.from_pretrained(self.path, local_files_only=True)
        self.model = self._to_device(
            AutoModelForImageClassification.from_pretrained(self.path, local_files_only=True))
        labels = self.model.config.id2label
        self.labels = [clean_label(labels[i]) for i in range(len(labels))]
        self.batcher = MicroBatcher(self._predict_batch, self.max_batch, self.max_wait_s,
                                    self.on_batch)

    def predict(self, image: Image.Image) -> list[tuple[str, float]]:
        """Every label with its probability (0–1), best first; duplicate names merged."""
        return self.batcher.submit(image)

    def _predict_batch(self, images: list[Image.Image]) -> list[list[tuple[str, float]]]:
        with self.torch.inference_mode():
            logits = self.model(pixel_values=self._pixels(self.processor, images)).logits
            rows = logits.float().softmax(-1).cpu().tolist()
        out = []
        for probs in rows:
            best: dict[str, float] = {}
            for label, p in zip(self.labels, probs, strict=True):
                best[label] = max(best.get(label, 0.0), p)
            out.append(sorted(best.items(), key=lambda kv: -kv[1]))
        return out


class ZeroShotTagger(VisionModel):
    """Scores ``prompt.format(label)`` for every label against the image.

    SigLIP-family models (those with a ``logit_bias``) give each label an
    independent probability (sigmoid) — the right reading for multi-label
    tagging. CLIP-family models give a softmax over the vocabulary, so their
    confidences are shares that sum to 100 across it.
    """

    prompt = "a photo of {}."

    def _load(self) -> None:
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        self.processor = AutoImageProcessor.from_pretrained(self.path, local_files_only=True)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        self.model = self._to_device(AutoModel.from_pretrained(self.path, local_files_only=True))
        self.sigmoid = getattr(self.model, "logit_bias", None) is not None
        self._text_cache: dict[tuple[str, ...], Any] = {}
        self.batcher = MicroBatcher(self._scores_batch, self.max_batch, self.max_wait_s,
                                    self.on_batch)

    @staticmethod
    def _tensor(out: Any) -> Any:
        # transformers 5 returns model outputs here; older versions a tensor.
        return out if hasattr(out, "norm") else out.pooler_output

    def text_embeddings(self, prompts: tuple[str, ...]) -> Any:
        """Normalised text embeddings of some prompts, computed once per prompt tuple."""
        cached = self._text_cache.get(prompts)
        if cached is not None:
            return cached
        with self._lock, self.torch.inference_mode():
            kwargs: dict[str, Any] = {"padding": "max_length" if self.sigmoid else True,
                                      "truncation": True, "return_tensors": "pt"}
            if self.sigmoid:
                kwargs["max_length"] = min(64, self.tokenizer.model_max_length)
            tokens = self.tokenizer(list(prompts), **kwargs).to(self.device)
            args = {"input_ids": tokens["input_ids"]}
            if not self.sigmoid and "attention_mask" in tokens:
                args["attention_mask"] = tokens["attention_mask"]
            emb = self._tensor(self.model.get_text_features(**args)).float()
            emb = emb / emb.norm(dim=-1, keepdim=True)
            if len(self._text_cache) > 256:
                self._text_cache.clear()
            self._text_cache[prompts] = emb
            return emb

    def scores(self, image: Image.Image, prompts: tuple[str, ...]) -> list[float]:
        """How well each prompt describes the image (0–1), in the prompts' order."""
        return self.batcher.submit((image, prompts))

    def _scores_batch(self, items: list[tuple[Image.Image, tuple[str, ...]]],
                      ) -> list[list[float]]:
        """One image forward pass for every item; each scored against its own prompts."""
        texts = [self.text_embeddings(prompts) for _, prompts in items]
        with self.torch.inference_mode():
            img = self._tensor(self.model.get_image_features(
                pixel_values=self._pixels(self.processor, [im for im, _ in items]))).float()
            img = img / img.norm(dim=-1, keepdim=True)
            scale = self.model.logit_scale.float().exp()
            out = []
            for row, text in zip(img, texts, strict=True):
                logits = (row @ text.T) * scale
                if self.sigmoid:
                    probs = (logits + self.model.logit_bias.float()).sigmoid()
                else:
                    probs = logits.softmax(-1)
                out.append([float(p) for p in probs.cpu().tolist()])
        return out

    def predict(self, image: Image.Image, labels: tuple[str, ...]) -> list[tuple[str, float]]:
        """Every label with its confidence (0–1), best first."""
        probs = self.scores(image, tuple(self.prompt.format(label) for label in labels))
        return sorted(zip(labels, probs, strict=True), key=lambda kv: -kv[1])


class Captioner(VisionModel):
    def _load(self) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.processor = AutoProcessor.from_pretrained(self.path, local_files_only=True)
        self.model = self._to_device(
            AutoModelForImageTextToText.from_pretrained(self.path, local_files_only=True))

        self.batcher = MicroBatcher(self._predict_batch, self.max_batch, self.max_wait_s,
                                    self.on_batch)

    def predict(self, image: Image.Image, max_tokens: int) -> str:
        return self.batcher.submit((image, max_tokens))

    def _predict_batch(self, items: list[tuple[Image.Image, int]]) -> list[str]:
        """One batched ``generate`` per distinct token budget (greedy: each sequence is
        decoded as it would be alone)."""
        out: dict[int, str] = {}
        for budget in sorted({t for _, t in items}):
            which = [i for i, (_, t) in enumerate(items) if t == budget]
            with self.torch.inference_mode():
                inputs = self.processor(images=[items[i][0].convert("RGB") for i in which],
                                        return_tensors="pt")
                inputs = {k: (v.to(self.device, dtype=self.dtype) if v.is_floating_point()
                              else v.to(self.device)) for k, v in inputs.items()}
                tokens = self.model.generate(**inputs, max_new_tokens=budget, do_sample=False)
            texts = self.processor.batch_decode(tokens, skip_special_tokens=True)
            out.update({i: clean_caption(t) for i, t in zip(which, texts, strict=True)})
        return [out[i] for i in range(len(items))]


def clean_label(raw: str) -> str:
    """``"tabby, tabby cat"`` → ``"Tabby"``; ``"golden_retriever"`` → ``"Golden retriever"``."""
    first = raw.split(",")[0].replace("_", " ").strip()
    return first[:1].upper() + first[1:]


_ARTIFACTS = re.compile(r"\[(?:unused\d+|pad|cls|sep|unk|mask)\]|<[^<>\s]{1,20}>|</?s>",
                        re.IGNORECASE)


def clean_caption(text: str) -> str:
    """One tidy sentence: no special tokens, single spaces, sentence case, a final period."""
    text = _ARTIFACTS.sub(" ", text)
    text = re.sub(r"\b(?:arafed|araffe|arafe)\b", " ", text, flags=re.I)  # a BLIP artefact
    text = re.sub(r"\s+([,.!?;:])", r"\1", re.sub(r"\s+", " ", text)).strip(" ,;:-")
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."
