"""remove-bg speed: raw ONNX inference vs ``rembg.remove`` vs extworker end to end.

Same photos (scikit-image samples upscaled to 1-4 MP JPEGs), same ONNX
session, one run. "raw" is only ``InferenceSession.run`` on a prepared
320x320 tensor; "rembg.remove" is the library call on the JPEG bytes
(returns PNG bytes, Pillow's default zlib level 6); "extworker" is one
``Pipeline.execute`` — read the blob, decode, infer, composite, encode PNG,
write the new version, commit record + units — on the embedded store.

    python benchmarks/remove_bg.py [--repeat 3] [--models-dir DIR]
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
from pathlib import Path

import skimage.data
from PIL import Image

from extensions import loaders
from worker.models import pull
from worker.runtime import Runtime
from worker.settings import Settings

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


def timed(fn, repeat: int) -> float:
    fn()  # warm-up
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--models-dir", default=".data/models")
    ap.add_argument("--photos", nargs="+", choices=list(PHOTOS), default=list(PHOTOS))
    args = ap.parse_args()
    pull("u2netp", Path(args.models_dir))

    from rembg import remove

    tmp = Path(tempfile.mkdtemp())
    rows = []
    for level in (1, 6):
        settings = Settings(data_dir=tmp / f"l{level}", models_dir=Path(args.models_dir),
                            png_compress_level=level)
        queued: list[tuple[str, str]] = []
        rt = Runtime(settings, embedded=True, enqueue=lambda q, j, s: queued.append((j, s)))
        p = rt.pipeline
        for name, (sample, size) in ((n, PHOTOS[n]) for n in args.photos):
            data = photo(sample, size)
            # A fresh file per run: each run works on the original JPEG, not on
            # the previous run's PNG output.
            recs = [p.add_file(data, f"{name}.jpg") for _ in range(args.repeat + 1)]

            def extworker(recs=recs) -> None:
                rec = recs.pop()
                p.accept({"fileId": rec.fileId, "extensions": [{"name": "remove-bg"}]})
                job_id, slot = queued.pop()
                assert p.execute(job_id, slot)["status"] == "success"

            e2e = timed(extworker, args.repeat)
            if level == 1:
                model = loaders.get(rt.models, "remove-bg", "u2netp", settings)
                small = Image.open(io.BytesIO(data)).convert("RGB").resize((320, 320))
                inp = model.session.normalize(
                    small, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), (320, 320))
                raw = timed(lambda: model.session.inner_session.run(None, inp), args.repeat)
                lib = timed(lambda: remove(data, session=model.session), args.repeat)
                rows.append([name, raw, lib, e2e, None])
            else:
                next(r for r in rows if r[0] == name)[4] = e2e

    print(f"{'photo':<15}{'raw s/img':>10}{'rembg s/img':>12}{'ext s/img':>10}"
          f"{'ext/raw':>9}{'rembg/ext':>10}{'ext(z6) s':>10}{'rembg/ext(z6)':>14}")
    for name, raw, lib, e2e, e2e6 in rows:
        print(f"{name:<15}{raw:>10.3f}{lib:>12.3f}{e2e:>10.3f}{e2e / raw:>9.2f}"
              f"{lib / e2e:>10.2f}{e2e6:>10.3f}{lib / e2e6:>14.2f}")
    print("ext = extworker end to end, PNG zlib level 1 (default); ext(z6) = level 6, "
          "the level rembg.remove uses")


if __name__ == "__main__":
    main()
