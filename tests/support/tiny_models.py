"""Tiny randomly initialised transformers models, saved like real ones.

Each is a directory in ``MODELS_DIR/hf/<name>`` with its config, weights and
tokenizer/processor files — loaded by extworker through exactly the code path
of a pulled hub model. Their outputs are random: tests check plumbing and
contracts, never quality.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

VERSION = "3"  # bump to rebuild cached copies
CLASSES = ["tabby, tabby cat", "golden retriever", "space shuttle", "espresso",
           "mountain bike, all-terrain bike", "Egyptian cat", "sports car"]
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "cat", "dog", "the",
         "on", "in", "man", "woman", "sitting", "with", "red", "car", "street", "rocket",
         "arafed", "table", "cup", "coffee", "."]
VISION = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
              image_size=64, patch_size=16)


def _clip_tokenizer(tmp: Path):  # noqa: ANN202
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.ascii_lowercase + string.digits + " -'&,./":
        for t in (c, c + "</w>"):
            vocab.setdefault(t, len(vocab))
    (tmp / "vocab.json").write_text(json.dumps(vocab))
    (tmp / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(tmp / "vocab.json"), str(tmp / "merges.txt")), len(vocab)


def _begin(models_dir: Path, kind: str) -> tuple[Path, Path, Path] | None:
    """(hf folder, scratch folder, stamp to write when done) for building the ``kind`` set,
    seeded; None when that set is built already (cached by VERSION)."""
    import torch

    hf = models_dir / "hf"
    stamp = hf / f".{kind}-{VERSION}"
    if stamp.exists():
        return None
    scratch = hf / f".scratch-{kind}"
    scratch.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    return hf, scratch, stamp


def build(models_dir: Path) -> dict[str, str]:
    """Build (once; cached by VERSION) and return {role: model name}."""
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        SiglipConfig,
        SiglipModel,
        ViTConfig,
        ViTForImageClassification,
        ViTImageProcessor,
    )

    names = {"classifier": "tiny-vit", "siglip": "tiny-siglip", "clip": "tiny-clip",
             "captioner": "tiny-blip"}
    started = _begin(models_dir, "tiny")
    if started is None:
        return names
    hf, scratch, stamp = started

    d = hf / names["classifier"]
    cfg = ViTConfig(**VISION, num_labels=len(CLASSES), id2label=dict(enumerate(CLASSES)),
                    label2id={c: i for i, c in enumerate(CLASSES)})
    ViTForImageClassification(cfg).save_pretrained(d)
    ViTImageProcessor(size={"height": 64, "width": 64}).save_pretrained(d)

    tok, n_vocab = _clip_tokenizer(scratch)
    text = dict(vocab_size=n_vocab, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=64, max_position_embeddings=64, bos_token_id=0,
                eos_token_id=1, pad_token_id=1)
    image_proc = CLIPImageProcessor(size={"shortest_edge": 64},
                                    crop_size={"height": 64, "width": 64})
    for role, model in (
        ("siglip", SiglipModel(SiglipConfig(vision_config=VISION, text_config=text))),
        ("clip", CLIPModel(CLIPConfig(vision_config=VISION, text_config=text,
                                      projection_dim=16))),
    ):
        d = hf / names[role]
        model.save_pretrained(d)
        tok.save_pretrained(d)
        image_proc.save_pretrained(d)

    (scratch / "bert-vocab.txt").write_text("\n".join(WORDS))
    bert = BertTokenizer(str(scratch / "bert-vocab.txt"))
    cfg = BlipConfig(vision_config=VISION, text_config=dict(
        vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, bos_token_id=2, sep_token_id=3,
        pad_token_id=0))
    d = hf / names["captioner"]
    BlipForConditionalGeneration(cfg).save_pretrained(d)
    BlipProcessor(image_processor=BlipImageProcessor(size={"height": 64, "width": 64}),
                  tokenizer=bert).save_pretrained(d)
    stamp.write_text(VERSION)
    return names


def build_full_size(models_dir: Path) -> dict[str, str]:
    """Full-size models of the default architectures with **random weights** (speed only):
    ViT-B/16 at 224 (1,000 classes), SigLIP base-patch16-224, BLIP base at 384 — each from
    its library's default config, saved like a pulled model. For benchmarks; no hub."""
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
        SiglipConfig,
        SiglipImageProcessor,
        SiglipModel,
        ViTConfig,
        ViTForImageClassification,
        ViTImageProcessor,
    )

    names = {"classifier": "random-vit-b16", "siglip": "random-siglip-base",
             "captioner": "random-blip-base"}
    started = _begin(models_dir, "full")
    if started is None:
        return names
    hf, scratch, stamp = started
    labels = {i: f"class {i}" for i in range(1000)}
    d = hf / names["classifier"]
    ViTForImageClassification(ViTConfig(num_labels=1000, id2label=labels, label2id={
        v: k for k, v in labels.items()})).save_pretrained(d)
    ViTImageProcessor().save_pretrained(d)  # 224 x 224
    tok, _ = _clip_tokenizer(scratch)
    d = hf / names["siglip"]
    SiglipModel(SiglipConfig()).save_pretrained(d)
    tok.save_pretrained(d)
    SiglipImageProcessor().save_pretrained(d)
    (scratch / "bert-vocab.txt").write_text("\n".join(WORDS))
    d = hf / names["captioner"]
    BlipForConditionalGeneration(BlipConfig()).save_pretrained(d)
    BlipProcessor(image_processor=BlipImageProcessor(),  # 384 x 384
                  tokenizer=BertTokenizer(str(scratch / "bert-vocab.txt"))).save_pretrained(d)
    stamp.write_text(VERSION)
    return names
