"""CPU thread budget: throughput of several worker processes running u2netp at once,
with ONNX Runtime's default threads (one per host core, in every process) vs extworker's
budget (``worker.models.devices.inference_threads``: the CPUs available divided by the processes).

    python benchmarks/threads.py [--processes 1 2 4] [--images 12] [--models-dir DIR]
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's folder comes first on sys.path, and benchmarks/webhooks.py
# would shadow the `webhooks` package.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)
import argparse
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np

from worker.core.settings import Settings
from worker.models.catalog import pull
from worker.models.devices import available_cpus, inference_threads


def _work(models_dir: Path, threads: int, images: int, start: mp.Barrier,
          out: mp.Queue) -> None:
    # The worker's own session class, so the benchmark measures the options it really sets.
    from extensions.rembg_session import RembgModel

    session = RembgModel("u2netp", models_dir, "cpu", threads).session
    feed = {session.get_inputs()[0].name: np.random.rand(1, 3, 320, 320).astype(np.float32)}
    session.run(None, feed)  # warm-up
    start.wait()
    t0 = time.perf_counter()
    for _ in range(images):
        session.run(None, feed)
    out.put(time.perf_counter() - t0)


def throughput(models_dir: Path, processes: int, threads: int, images: int) -> float:
    """Images/s of ``processes`` processes each running ``images`` inferences at once."""
    start, out = mp.Barrier(processes), mp.Queue()
    procs = [mp.Process(target=_work, args=(models_dir, threads, images, start, out))
             for _ in range(processes)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return processes * images / max(out.get() for _ in procs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--models-dir", default=".data/models")
    args = ap.parse_args()
    models_dir = Path(args.models_dir)
    pull("u2netp", models_dir)
    print(f"u2netp, {available_cpus()} CPU(s) available, {args.images} images per process")
    print(f"{'processes':>9}{'budget':>8}{'default img/s':>15}{'budget img/s':>14}{'ratio':>8}")
    for n in args.processes:
        budget = inference_threads(Settings(models_dir=models_dir, processes=n))
        default = throughput(models_dir, n, 0, args.images)
        ours = throughput(models_dir, n, budget, args.images)
        print(f"{n:>9}{budget:>8}{default:>15.2f}{ours:>14.2f}{ours / default:>7.2f}x")
    print("default = ONNX Runtime's own thread count in every process")


if __name__ == "__main__":
    main()
