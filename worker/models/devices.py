"""Which device runs inference: ``EXTWORKER_DEVICE=auto|cpu|cuda[:N]``.

``auto`` uses a GPU only when one really works: for torch, ``cuda`` is
available and the index exists; for ONNX Runtime, the CUDA provider is
offered **and** a device is visible (onnxruntime lists its CUDA provider
whenever ``onnxruntime-gpu`` is installed, GPU or not). Every pick is logged
once per process with its reason. An explicit ``cuda`` that cannot work is an
error, not a silent CPU fallback.

On the CPU, inference gets a thread budget (``inference_threads``): ONNX Runtime
and torch otherwise size their pools from the cores they can see, in every worker
process, and neither reads the container's CPU quota (onnxruntime#29510) — on a
64-core node with a 2-CPU limit and 4 processes that is hundreds of busy threads
taking turns on 2 CPUs. Explicit counts also keep ONNX Runtime from pinning
threads to cores outside a cpuset.
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import logging
import math
import os
import re
from pathlib import Path
from typing import Any

from worker.core.errors import ExtworkerError
from worker.core.settings import Settings

log = logging.getLogger(__name__)
_logged: set[tuple[object, ...]] = set()


def _index(device: str) -> int:
    return int(device.split(":", 1)[1]) if device.startswith("cuda:") else 0


def _log_once(key: tuple[object, ...], message: str, *args: object) -> None:
    """Log ``message`` the first time ``key`` is seen in this process."""
    if key not in _logged:
        _logged.add(key)
        log.info(message, *args)


def _note(runtime: str, requested: str, picked: str, reason: str) -> None:
    _log_once((runtime, requested, picked), "%s device: requested %s, using %s (%s)",
              runtime, requested, picked, reason)


def cuda_devices() -> int:
    """How many CUDA devices torch can use (0 without torch or without a GPU)."""
    if importlib.util.find_spec("torch") is None:
        return 0
    import torch

    try:
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken driver reads as "no GPU"
        return 0


def gpu_visible() -> bool:
    """Is any NVIDIA device visible to this process? (torch if present, else /dev)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    if importlib.util.find_spec("torch") is not None:
        return cuda_devices() > 0
    return os.path.exists("/dev/nvidia0")


def visible_gpu_count() -> int:
    """NVIDIA devices this process would see, counted without initialising CUDA (safe before
    a fork): ``CUDA_VISIBLE_DEVICES``'s entries when it is set, else ``/dev/nvidiaN`` nodes."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    return len([d for d in glob.glob("/dev/nvidia*") if re.fullmatch(r"/dev/nvidia\d+", d)])


def torch_device(device: str) -> str:
    """The torch device string for the setting: ``cpu`` or ``cuda:N``."""
    if device == "cpu":
        _note("torch", device, "cpu", "configured")
        return "cpu"
    count = cuda_devices()
    index = _index(device)
    if count > index:
        _note("torch", device, f"cuda:{index}", f"{count} CUDA device(s) visible")
        return f"cuda:{index}"
    if device == "auto":
        _note("torch", device, "cpu", "CUDA absent")
        return "cpu"
    raise ExtworkerError(f"EXTWORKER_DEVICE={device}, but torch sees {count} CUDA device(s)")


def onnx_providers(device: str) -> tuple[list[Any], str]:
    """ONNX Runtime providers for the setting, and the device label we report."""
    import onnxruntime as ort

    if device == "cpu":
        _note("onnxruntime", device, "cpu", "configured")
        return ["CPUExecutionProvider"], "cpu"
    index = _index(device)
    offered = "CUDAExecutionProvider" in ort.get_available_providers()
    if offered and gpu_visible():
        _note("onnxruntime", device, f"cuda:{index}", "CUDA provider and a device present")
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"], (
            f"cuda:{index}")
    if device == "auto":
        why = "no CUDA provider (install the gpu extra)" if not offered else "no GPU visible"
        _note("onnxruntime", device, "cpu", why)
        return ["CPUExecutionProvider"], "cpu"
    raise ExtworkerError(
        f"EXTWORKER_DEVICE={device}, but onnxruntime "
        + ("has no CUDA provider" if not offered else "sees no GPU"))


def active_device(session: Any, wanted: str) -> str:
    """What an ONNX session really runs on (CUDA requested can silently fall back)."""
    providers = session.get_providers()
    if wanted.startswith("cuda") and "CUDAExecutionProvider" not in providers:
        log.warning("CUDA was requested but the ONNX session runs on CPU")
        return "cpu"
    return wanted


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (v2 ``cpu.max``, else v1 CFS files),
    or ``None`` when there is none or it cannot be read."""
    try:
        quota, _, period = (root / "cpu.max").read_text().partition(" ")
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for sub in ("cpu", "cpu,cpuacct"):
        try:
            quota_us = int((root / sub / "cpu.cfs_quota_us").read_text())
            period_us = int((root / sub / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return None if quota_us <= 0 else quota_us / period_us
    return None


_CGROUP = Path("/sys/fs/cgroup")


@functools.cache
def _own_cpus() -> int:
    return _count_cpus(_CGROUP)


def available_cpus(cgroup_root: Path = _CGROUP) -> int:
    """CPUs this process may run on: its affinity, capped by a cgroup quota (rounded up).
    For this process's own cgroup it is read once (a job asks on every run)."""
    return _own_cpus() if cgroup_root == _CGROUP else _count_cpus(cgroup_root)


def _count_cpus(cgroup_root: Path) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit(cgroup_root)
    return max(1, min(cpus, math.ceil(limit))) if limit else cpus


def inference_threads(settings: Settings, cgroup_root: Path = _CGROUP) -> int:
    """Threads one process may use for inference: the setting, else its share of the CPUs."""
    if settings.inference_threads:
        return settings.inference_threads
    cpus = available_cpus(cgroup_root)
    threads = max(1, cpus // settings.processes)
    _log_once(("threads", cpus, threads),
              "inference threads: %d per process (%d CPU(s) available, %d process(es))",
              threads, cpus, settings.processes)
    return threads
