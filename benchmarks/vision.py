"""Vision speed on CPU at batch 1: images/s per tagger kind and the captioner.

With no arguments it builds the tests' tiny random models (plumbing overhead
only — their numbers say nothing about real models). With ``--models-dir``
pointing at a MODELS_DIR where real models were pulled (``extworker models
pull vit-base-imagenet`` etc.), it measures those. Load time is printed
separately from inference.

    python benchmarks/vision.py [--models-dir DIR | --full-size DIR] [--classifier NAME]
        [--zero-shot NAME] [--captioner NAME] [--images 10] [--concurrency 4]

Then micro-batching: the classifier and the zero-shot tagger with ``--concurrency``
callers at once, batching off (``max_batch=1``) and on (``EXTWORKER_BATCH_MAX_SIZE``'s
default), as images/s and their ratio, in one run.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's folder comes first on sys.path, and benchmarks/webhooks.py
# would shadow the `webhooks` package.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)
import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import skimage.data
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from extensions.auto_tagging import DEFAULT_VOCABULARY, load_vocabulary  # noqa: E402
from extensions.vision import Captioner, ImageClassifier, ZeroShotTagger  # noqa: E402


def photos(n: int) -> list[Image.Image]:
    samples = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(),
               skimage.data.rocket()]
    out = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(samples[i % 4]).convert("RGB").save(buf, "JPEG", quality=90)
        out.append(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models-dir")
    ap.add_argument("--classifier", default="vit-base-imagenet")
    ap.add_argument("--zero-shot", default="siglip-base")
    ap.add_argument("--captioner", default="blip-caption-base")
    ap.add_argument("--images", type=int, default=10)
    ap.add_argument("--max-tokens", type=int, default=30)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    ap.add_argument("--full-size", metavar="DIR", help="build (once, into DIR) full-size "
                    "models of the default architectures with random weights and measure "
                    "those: speed is real, output is not (no hub needed, e.g. on a GPU node)")
    args = ap.parse_args()
    if args.full_size:
        from tests.support.tiny_models import build_full_size

        models_dir = Path(args.full_size)
        full = build_full_size(models_dir)
        names = {"classifier": full["classifier"], "zero-shot": full["siglip"],
                 "captioner": full["captioner"]}
        label = "full-size models, random weights (speed only)"
    elif args.models_dir:
        models_dir = Path(args.models_dir)
        names = {"classifier": args.classifier, "zero-shot": args.zero_shot,
                 "captioner": args.captioner}
        label = "real models"
    else:
        from tests.support.tiny_models import build

        models_dir = Path(tempfile.mkdtemp())
        tiny = build(models_dir)
        names = {"classifier": tiny["classifier"], "zero-shot": tiny["siglip"],
                 "captioner": tiny["captioner"]}
        label = "tiny random models (plumbing only)"
    vocab = load_vocabulary(str(DEFAULT_VOCABULARY))
    images = photos(args.images)
    print(f"{label}; {args.device}, batch 1, {len(images)} photos, torch threads "
          f"{os.environ.get('OMP_NUM_THREADS', 'default')}")
    print(f"{'model':<34}{'load s':>8}{'first s':>9}{'images/s':>10}")
    runs = [("classifier", ImageClassifier, lambda m, im: m.predict(im)),
            ("zero-shot", ZeroShotTagger, lambda m, im: m.predict(im, vocab)),
            ("captioner", Captioner, lambda m, im: m.predict(im, args.max_tokens))]
    for kind, cls, infer in runs:
        t0 = time.perf_counter()
        model = cls(names[kind], models_dir, args.device)
        load = time.perf_counter() - t0
        t0 = time.perf_counter()
        infer(model, images[0])  # zero-shot: includes the vocabulary's text embeddings
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        for im in images:
            infer(model, im)
        rate = len(images) / (time.perf_counter() - t0)
        print(f"{kind + ': ' + names[kind]:<34}{load:>8.2f}{first:>9.3f}{rate:>10.1f}")
    batching(runs[:2], names, models_dir, images, args.concurrency, args.device)


def batching(runs: list, names: dict, models_dir: Path, images: list, callers: int,
             device: str = "cpu") -> None:
    """images/s with ``callers`` concurrent callers, batching off and on, and the ratio."""
    from concurrent.futures import ThreadPoolExecutor

    from worker.core.settings import Settings

    size = Settings.model_fields["batch_max_size"].default
    wait = Settings.model_fields["batch_max_wait_ms"].default
    print(f"\nmicro-batching, {callers} concurrent callers, {len(images)} photos "
          f"(max batch {size}, wait {wait} ms)")
    print(f"{'model':<34}{'off img/s':>10}{'on img/s':>10}{'on/off':>8}")
    for kind, cls, infer in runs:
        rates = []
        for max_batch in (1, size):
            model = cls(names[kind], models_dir, device, max_batch=max_batch, max_wait_ms=wait)
            infer(model, images[0])
            with ThreadPoolExecutor(callers) as pool:
                t0 = time.perf_counter()
                list(pool.map(lambda im, m=model: infer(m, im), images))
                rates.append(len(images) / (time.perf_counter() - t0))
        print(f"{kind + ': ' + names[kind]:<34}{rates[0]:>10.1f}{rates[1]:>10.1f}"
              f"{rates[1] / rates[0]:>8.2f}")


if __name__ == "__main__":
    main()
