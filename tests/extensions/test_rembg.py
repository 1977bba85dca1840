"""remove-bg models: every family's pre/post-processing against rembg's own session classes,
the catalog against rembg's pinned downloads, and micro-batching (equal masks, no crossing,
a fixed-batch model falls back and says so once)."""

from __future__ import annotations

import inspect
import logging

import numpy as np
import pytest
from rembg.sessions import sessions

from extensions.rembg_session import RECIPES, RembgModel, normalize, prepare, to_mask
from tests.support import PHOTOS, concurrently, photo
from worker.models.catalog import REGISTRY

REMBG_MODELS = sorted(n for n, s in REGISTRY.items() if s.kind == "rembg-onnx")
def fake_output(x: np.ndarray, channels: int) -> np.ndarray:
    """A deterministic model output that depends on every input pixel and channel."""
    base = x[:, 0] * 0.7 - x[:, 1] * 0.2 + x[:, 2] * 0.5
    planes = [base * (k + 1) * (-1) ** k + k * 0.3 for k in range(channels)]
    return np.stack(planes, axis=1).astype(np.float32)


def rembg_probe(name: str, channels: int):
    """rembg's real session class for ``name``, its ONNX session replaced by a recorder."""
    base = sessions[name]

    class Recorder:
        def __init__(self) -> None:
            self.fed: list[np.ndarray] = []

        def get_inputs(self):
            return [type("Input", (), {"name": "input.1"})()]

        def run(self, _outputs, feed):
            (x,) = feed.values()
            self.fed.append(x)
            return [fake_output(x, channels)]

    class Probe(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:  # no model file, no download
            self.inner_session = Recorder()

    return Probe()


@pytest.mark.parametrize("name", REMBG_MODELS)
def test_each_model_is_fed_and_read_exactly_as_rembg_does(name):
    recipe = RECIPES[name]
    channels = 4 if recipe.post == "attire" else 1
    probe = rembg_probe(name, channels)
    im = photo("astronaut")
    small = prepare(im, recipe.size)
    kwargs = {"cc": "attire"} if recipe.post == "attire" else {}
    (theirs,) = probe.predict(small, **kwargs)
    (fed,) = probe.inner_session.fed
    ours = normalize(small, recipe)
    assert fed.shape == (1, 3, recipe.size, recipe.size)  # the input size rembg uses
    np.testing.assert_allclose(ours, fed[0], atol=1e-5)  # its mean/std and scaling
    mine = to_mask(fake_output(ours[None], channels)[0], recipe.post)
    diff = np.abs(np.asarray(mine, np.int16) - np.asarray(theirs, np.int16))
    assert theirs.size == mine.size and diff.max() <= 1, name  # its post-processing


@pytest.mark.parametrize("name", REMBG_MODELS)
def test_the_catalog_pulls_what_rembg_pins(name):
    spec = REGISTRY[name]
    source = inspect.getsource(sessions[name].download_models)
    assert spec.sources[0].describe() in source  # rembg's own release URL
    assert spec.checksum in source  # its md5/sha256, same algorithm
    assert spec.filename == f"{sessions[name].name()}.onnx"  # where rembg looks


def test_every_rembg_model_has_a_recipe():
    assert set(RECIPES) == set(REMBG_MODELS)
    assert "non-commercial" in REGISTRY["bria-rmbg"].licence


def test_masks_match_rembg_on_the_real_model(models_dir, monkeypatch):
    monkeypatch.setenv("U2NET_HOME", str(models_dir / "rembg"))
    from rembg import new_session

    theirs = new_session("u2netp")
    ours = RembgModel("u2netp", models_dir, "cpu", threads=1)
    for name in PHOTOS[:3]:
        small = prepare(photo(name), 320)
        a = np.asarray(theirs.predict(small)[0], np.int16)
        b = np.asarray(ours.mask(small), np.int16)
        assert np.abs(a - b).max() <= 1, name


def test_batched_masks_equal_unbatched_and_never_cross(models_dir):
    alone = RembgModel("u2netp", models_dir, "cpu", threads=1)
    together = RembgModel("u2netp", models_dir, "cpu", threads=1, max_batch=8,
                          max_wait_ms=200)
    images = [prepare(photo(n), 640) for n in PHOTOS]
    expected = [np.asarray(alone.mask(im), np.int16) for im in images]
    got = concurrently(lambda im: np.asarray(together.mask(im), np.int16), images)
    assert max(together.batcher.batches) > 1  # really batched
    assert together.session.get_inputs()[0].shape[0] == "batch"  # renamed in memory
    assert alone.session.get_inputs()[0].shape[0] == 1  # unbatched: the file as it is
    for name, e, g in zip(PHOTOS, expected, got, strict=True):
        assert np.abs(e - g).max() <= 1, name
    # Each caller got its own mask: the photos' masks differ from one another.
    assert all(np.abs(expected[0] - e).mean() > 5 for e in expected[1:])


def fixed_batch_model(path) -> None:
    """A tiny ONNX model whose graph really is fixed to a batch of one (a Reshape to a
    constant shape), shaped like u2netp: (1, 3, 320, 320) -> (1, 1, 320, 320)."""
    import onnx
    from onnx import TensorProto, helper

    size = 320
    nodes = [
        helper.make_node("Reshape", ["x", "flat"], ["f"]),
        helper.make_node("Reshape", ["f", "back"], ["g"]),
        helper.make_node("ReduceMean", ["g", "axes"], ["y"], keepdims=1),
    ]
    inits = [
        helper.make_tensor("flat", TensorProto.INT64, [2], [1, 3 * size * size]),
        helper.make_tensor("back", TensorProto.INT64, [4], [1, 3, size, size]),
        helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
    ]
    graph = helper.make_graph(
        nodes, "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, size, size])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def test_a_fixed_batch_model_falls_back_to_one_at_a_time_and_says_so_once(
        tmp_path, caplog):
    fixed_batch_model(REGISTRY["u2netp"].path(tmp_path))
    model = RembgModel("u2netp", tmp_path, "cpu", threads=1, max_batch=8, max_wait_ms=200)
    images = [prepare(photo(n), 320) for n in PHOTOS]
    with caplog.at_level(logging.WARNING, logger="extensions.rembg_session"):
        first = concurrently(lambda im: np.asarray(model.mask(im)), images)
        second = concurrently(lambda im: np.asarray(model.mask(im)), images)
    alone = RembgModel("u2netp", tmp_path, "cpu", threads=1)
    for im, a, b in zip(images, first, second, strict=True):
        assert isinstance(a, np.ndarray), a  # no caller failed
        expected = np.asarray(alone.mask(im))
        assert np.array_equal(a, expected) and np.array_equal(b, expected)
    warnings = [r for r in caplog.records if "does not take a batch" in r.getMessage()]
    assert len(warnings) == 1 and not model.stats()["batched"]


def test_every_batch_size_is_reported(models_dir):
    """What feeds extworker_inference_batch_size: each batch run, once, with its size."""
    from extensions import loaders
    from worker.core.settings import Settings
    from worker.models.cache import ModelCache

    seen: list[tuple[str, int]] = []
    cache = ModelCache(on_batch=lambda model, size: seen.append((model, size)))
    settings = Settings(models_dir=models_dir, batch_max_wait_ms=100.0, device="cpu")
    model = loaders.get(cache, "remove-bg", "u2netp", settings)
    images = [prepare(photo(n), 320) for n in PHOTOS]
    concurrently(model.mask, images)
    assert {m for m, _ in seen} == {"u2netp"}
    assert sum(n for _, n in seen) == len(images) and max(n for _, n in seen) > 1
    assert [n for _, n in seen] == list(model.batcher.batches)
