"""``ModelRef``: which model, of which kind — the key of the model cache, of the inference
process's protocol and of ``EXTWORKER_PRELOAD`` entries, written ``<kind>:<name>``
(``remove-bg:u2netp``) and parsed here only."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ModelKind(StrEnum):
    """How a model is loaded and what it answers (``extensions.loaders``)."""

    REMOVE_BG = "remove-bg"
    IMAGENET = "imagenet"
    CLASSIFIER = "classifier"
    ZERO_SHOT = "zero-shot"
    CAPTIONER = "captioner"


@dataclass(frozen=True, order=True)
class ModelRef:
    kind: ModelKind
    name: str

    @classmethod
    def of(cls, kind: str, name: str) -> ModelRef:
        """A ref from its two parts; ``ValueError`` naming the kinds for an unknown kind."""
        try:
            known = ModelKind(kind)
        except ValueError:
            raise ValueError(f"unknown model kind {kind!r}; kinds: "
                             f"{', '.join(k.value for k in ModelKind)}") from None
        if not name:
            raise ValueError(f"{kind}: a model name is required")
        return cls(known, name)

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        """``<kind>:<name>`` (a preload entry), or ``ValueError`` saying what is expected
        (the caller names the entry)."""
        kind, sep, name = text.partition(":")
        if not sep or not kind or not name:
            raise ValueError("expected <kind>:<name>, e.g. remove-bg:u2netp")
        return cls.of(kind, name)

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.name}"
