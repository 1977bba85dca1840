"""remove-bg speed: raw ONNX inference vs ``rembg.remove`` vs extworker end to end.

Same photos (scikit-image samples upscaled to 1-4 MP JPEGs), same ONNX
session, one run. "raw" is only ``InferenceSession.run`` on a prepared
320x320 tensor; "rembg.remove" is the library call on the JPEG bytes
(returns PNG bytes, Pillow's default zlib level 6); "extworker" is one
``Pipeline.execute`` — read the blob, decode, infer, composite, encode PNG,
write the new version, commit record + units — on the embedded store.

    python benchmarks/remove_bg.py [--repeat 5] [--models-dir DIR]
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
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import skimage.data
from PIL import Image

from extensions import loaders
from worker.core.settings import Settings
from worker.models.catalog import pull
from worker.runtime import Runtime

PHOTOS = {  # name -> (sample, target size)
    "astronaut-1MP": ("astronaut", (1024, 1024)),
    "coffee-2MP": ("coffee", (1800, 1200)),
    "chelsea-3MP": ("chelsea", (2130, 1416)),
    "rocket-4MP": ("rocket", (1634, 2448)),
}


def photo(sample: str, size: tuple[int, int]) -> bytes:
    im = Image.fromarray(getattr(skimage.data, sample)()).convert("RGB")
    buf = io.BytesIO()
    im.resize(size, Image.Resampling.LANCZOS).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def interleaved(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median seconds of each function, measured round-robin (one warm-up each), so that
    a noisy neighbour or a clock change hits every variant alike instead of one of them."""
    for fn in fns.values():
        fn()
    runs: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            runs[key].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in runs.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--models-dir", default=".data/models")
    ap.add_argument("--photos", nargs="+", choices=list(PHOTOS), default=list(PHOTOS))
    args = ap.parse_args()
    pull("u2netp", Path(args.models_dir))

    from rembg import remove

    tmp = Path(tempfile.mkdtemp())
    default = Settings.model_fields["png_compress_level"].default
    levels = (default, 6)
    queued: list[tuple[str, str]] = []
    runtimes = {}
    for level in levels:
        settings = Settings(data_dir=tmp / f"l{level}", models_dir=Path(args.models_dir),
                            png_compress_level=level)
        runtimes[level] = Runtime(settings, embedded=True,
                                  enqueue=lambda q, j, s: queued.append((j, s)))
    model = loaders.get(runtimes[default].models, "remove-bg", "u2netp",
                        runtimes[default].settings)
    # rembg's own session on the same file (U2NET_HOME: rembg's documented override).
    os.environ["U2NET_HOME"] = str(Path(args.models_dir) / "rembg")
    from rembg import new_session

    rembg_session = new_session("u2netp")
    rows = []
    for name, (sample, size) in ((n, PHOTOS[n]) for n in args.photos):
        data = photo(sample, size)
        # A fresh file per run (added before timing): each run works on the original JPEG.
        files = {lv: [runtimes[lv].pipeline.add_file(data, f"{name}.jpg").fileId
                      for _ in range(args.repeat + 1)] for lv in levels}
        done: dict[int, str] = {}

        def extworker(level: int, files: dict[int, list[str]] = files,
                      done: dict[int, str] = done) -> None:
            p = runtimes[level].pipeline
            file_id = files[level].pop()
            p.accept({"fileId": file_id, "extensions": [{"name": "remove-bg"}]})
            job_id, slot = queued.pop()
            assert p.execute(job_id, slot).status == "success"
            done[level] = file_id

        small = Image.open(io.BytesIO(data)).convert("RGB").resize((320, 320))
        inp = rembg_session.normalize(
            small, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), (320, 320))
        t = interleaved({
            "raw": lambda: model.session.run(None, inp),
            "rembg": lambda data=data: remove(data, session=rembg_session),
            **{f"ext{lv}": (lambda lv=lv: extworker(lv)) for lv in levels},
        }, args.repeat)
        sizes = {"rembg": len(remove(data, session=rembg_session))}
        sizes.update({f"ext{lv}": runtimes[lv].pipeline.get_file(done[lv]).size
                      for lv in levels})
        rows.append((name, t, sizes))

    d = f"ext{default}"
    print(f"{'photo':<15}{'raw s/img':>10}{'rembg s/img':>12}{'ext s/img':>10}"
          f"{'ext/raw':>9}{'rembg/ext':>10}{'ext(z6) s':>10}{'rembg/ext(z6)':>14}"
          f"{'PNG MB rembg/ext/ext(z6)':>26}")
    for name, t, sizes in rows:
        mb = "/".join(f"{sizes[k] / 1e6:.2f}" for k in ("rembg", d, "ext6"))
        print(f"{name:<15}{t['raw']:>10.3f}{t['rembg']:>12.3f}{t[d]:>10.3f}"
              f"{t[d] / t['raw']:>9.2f}{t['rembg'] / t[d]:>10.2f}{t['ext6']:>10.3f}"
              f"{t['rembg'] / t['ext6']:>14.2f}{mb:>26}")
    print(f"medians of {args.repeat}, measured round-robin; ext = extworker end to end at PNG "
          f"level {default} (default); ext(z6) = level 6, the level rembg.remove uses")


if __name__ == "__main__":
    main()
