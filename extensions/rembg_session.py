"""One rembg session per model, loaded from ``MODELS_DIR`` only (never downloaded).

Apart from the extension so that the loaders (model cache keys) and the extension both
import it, and neither imports the other.
"""

from __future__ import annotations

import logging
import os
import threading

from PIL import Image

from worker.core.errors import PermanentError
from worker.models.catalog import REGISTRY, require
from worker.models.devices import active_device, onnx_providers

log = logging.getLogger(__name__)
_env_lock = threading.Lock()


class RembgModel:
    """One rembg session for one model, loaded from ``MODELS_DIR`` only (never downloaded)."""

    def __init__(self, name: str, models_dir: os.PathLike[str], device: str,
                 threads: int = 0) -> None:
        from pathlib import Path

        if REGISTRY.get(name) is None or REGISTRY[name].kind != "rembg-onnx":
            raise PermanentError(f"options.model: unknown remove-bg model {name!r}")
        path = require(name, Path(models_dir))
        providers, label = onnx_providers(device)
        import onnxruntime as ort
        from rembg import new_session

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:  # 0: ONNX Runtime's own default (sized from the cores it sees)
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        with _env_lock:
            # rembg finds models under U2NET_HOME/models/<name>/ (its documented
            # override); the file is already there, so it never downloads.
            os.environ["U2NET_HOME"] = str(path.parent.parent.parent)
            self.session = new_session(name, sess_opts=opts, providers=providers)
        self.name = name
        self.device = active_device(self.session.inner_session, label)
        shape = self.session.inner_session.get_inputs()[0].shape
        self.input_size = (
            (shape[3], shape[2]) if all(isinstance(d, int) for d in shape[2:4]) else None
        )
        log.info("loaded rembg model %s on %s", name, self.device)

    def mask(self, im: Image.Image) -> Image.Image:
        """The subject mask (mode L) at ``im``'s full size."""
        small = im
        if self.input_size is not None:
            tw, th = self.input_size
            factor = min(im.width // tw, im.height // th)
            if factor >= 2:
                small = small.reduce(factor)  # box filter, very cheap
            small = small.resize(self.input_size, Image.Resampling.BILINEAR)
        if small.mode != "RGB":
            small = small.convert("RGB")
        mask = self.session.predict(small)[0]
        if mask.size != im.size:
            mask = mask.resize(im.size, Image.Resampling.BILINEAR)
        return mask
