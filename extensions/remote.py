"""Models held by the node's inference process (``worker.models.remote``), seen from a worker.

``RemoteRembg`` and ``RemoteVision`` answer what the extensions call on a local model, with
the CPU work done here: remove-bg sends the normalised model-sized input and turns the output
into a full-size mask locally; vision models get the image box-reduced to their decode size.
The inference process itself is built in ``worker.runtime.run_inference_server``.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from worker.models.ref import ModelKind, ModelRef
from worker.models.remote import InferenceClient

from .rembg_session import RECIPES, mask_with


class RemoteRembg:
    def __init__(self, key: ModelRef, client: InferenceClient) -> None:
        self.key, self.client = key, client
        self.name = key.name
        self.recipe = RECIPES[self.name]
        self.device = client.call(key, "describe")["device"]  # loads it there, or fails

    def infer(self, x: Any) -> Any:
        return self.client.call(self.key, "infer", x)

    def mask(self, im: Image.Image) -> Image.Image:
        return mask_with(self.infer, self.recipe, im)


class RemoteVision:
    def __init__(self, key: ModelRef, client: InferenceClient) -> None:
        self.key, self.client = key, client
        info = client.call(key, "describe")
        self.device, self.decode_side = info["device"], info["decode_side"]

    def _small(self, image: Image.Image) -> Image.Image:
        """At most what the model uses (box-reduced, never below ``decode_side``)."""
        factor = min(image.size) // self.decode_side if self.decode_side else 1
        return image.reduce(factor) if factor >= 2 else image

    def predict(self, image: Image.Image, *args: Any) -> Any:
        return self.client.call(self.key, "predict", self._small(image), *args)

    def scores(self, image: Image.Image, prompts: tuple[str, ...]) -> list[float]:
        return self.client.call(self.key, "scores", self._small(image), prompts)  # type: ignore[no-any-return]


class RemoteImageNet(RemoteVision):
    """The imagenet tagger: tags and the embedding from one call."""

    def predict_and_embed(self, image: Image.Image) -> Any:
        return self.client.call(self.key, "predict_and_embed", self._small(image))


def remote_model(ref: ModelRef, client: InferenceClient) -> RemoteRembg | RemoteVision:
    if ref.kind is ModelKind.REMOVE_BG:
        return RemoteRembg(ref, client)
    return RemoteImageNet(ref, client) if ref.kind is ModelKind.IMAGENET else \
        RemoteVision(ref, client)
