"""Vision extensions on tiny random models, through the real load path and the pipeline."""

from __future__ import annotations

import io
import logging
import threading
import time

import pytest
from PIL import Image

from extensions import loaders
from extensions.vision import clean_caption, clean_label
from tests.pipeline.test_pipeline import run_job
from tests.support import jpeg
from worker.core.errors import ExtworkerError
from worker.models import devices
from worker.models.cache import ModelCache
from worker.runtime import Runtime


def _file(runtime, astronaut):
    return runtime.pipeline.add_file(jpeg(astronaut), "astronaut.jpg")


def _expected(runtime, kind, name, astronaut, min_conf, max_tags):
    """What the thresholds must produce, from the model's own scores."""
    from extensions.auto_tagging import DEFAULT_VOCABULARY, load_vocabulary

    image = Image.open(io.BytesIO(jpeg(astronaut)))  # what the worker decodes
    model = loaders.get(runtime.models, kind, name, runtime.settings)
    if kind == "classifier":
        scored = model.predict(image)
    else:
        vocab = load_vocabulary(str(runtime.settings.tag_vocabulary_file or DEFAULT_VOCABULARY))
        scored = model.predict(image, vocab)
    keep = [(n, round(p * 100, 2)) for n, p in scored if round(p * 100, 2) >= min_conf]
    return keep[:max_tags]


@pytest.mark.parametrize(("ext", "kind"), [("aws-auto-tagging", "classifier"),
                                           ("google-auto-tagging", "zero-shot")])
@pytest.mark.parametrize(("min_conf", "max_tags"), [(0, 30), (0, 3), (10, 30), (0, 0), (100, 5)])
def test_tagging_thresholds_shape_and_order(runtime, astronaut, ext, kind, min_conf, max_tags):
    rec = _file(runtime, astronaut)
    doc = run_job(runtime, {"fileId": rec.fileId, "extensions": [
        {"name": ext, "minConfidence": min_conf, "maxTags": max_tags}]})
    slot = doc["extensions"][ext]
    assert slot["status"] == "success", slot
    assert slot["device"] == "cpu" and slot["model"]
    tags = runtime.pipeline.get_file(rec.fileId).AITags or []
    name = runtime.settings.classifier_model if kind == "classifier" else \
        runtime.settings.zero_shot_model
    expected = _expected(runtime, kind, name, astronaut, min_conf, max_tags)
    assert [(t.name, t.confidence) for t in tags] == expected
    assert all(t.source == ext and 0 <= t.confidence <= 100 for t in tags)
    assert [t.confidence for t in tags] == sorted((t.confidence for t in tags), reverse=True)
    assert len(tags) <= max_tags
    if (min_conf, max_tags) == (0, 30) and kind == "classifier":
        assert len(tags) == 7  # every class of the tiny model, duplicates merged


def test_classifier_labels_are_cleaned(runtime, astronaut):
    rec = _file(runtime, astronaut)
    run_job(runtime, {"fileId": rec.fileId, "extensions": [
        {"name": "aws-auto-tagging", "minConfidence": 0, "maxTags": 30}]})
    names = {t.name for t in runtime.pipeline.get_file(rec.fileId).AITags}
    assert names == {"Tabby", "Golden retriever", "Space shuttle", "Espresso", "Mountain bike",
                     "Egyptian cat", "Sports car"}


def test_rerun_replaces_own_source_keeps_others_and_remove_ai_tags(runtime, astronaut):
    rec = _file(runtime, astronaut)
    both = [{"name": "aws-auto-tagging", "minConfidence": 0, "maxTags": 2},
            {"name": "google-auto-tagging", "minConfidence": 0, "maxTags": 2}]
    run_job(runtime, {"fileId": rec.fileId, "extensions": both})
    first = runtime.pipeline.get_file(rec.fileId).AITags
    assert {t.source for t in first} == {"aws-auto-tagging", "google-auto-tagging"}
    run_job(runtime, {"fileId": rec.fileId, "extensions": [
        {"name": "aws-auto-tagging", "minConfidence": 0, "maxTags": 1}]})
    again = runtime.pipeline.get_file(rec.fileId).AITags
    assert sum(t.source == "aws-auto-tagging" for t in again) == 1
    assert sum(t.source == "google-auto-tagging" for t in again) == 2
    # removeAITags runs before the extensions: "all" then a fresh google run.
    run_job(runtime, {"fileId": rec.fileId, "removeAITags": "all", "extensions": [
        {"name": "google-auto-tagging", "minConfidence": 0, "maxTags": 1}]})
    last = runtime.pipeline.get_file(rec.fileId).AITags
    assert [t.source for t in last] == ["google-auto-tagging"]
    drop = last[0].name
    run_job(runtime, {"fileId": rec.fileId, "removeAITags": [drop], "extensions": [
        {"name": "aws-auto-tagging", "minConfidence": 0, "maxTags": 1}]})
    assert all(t.name != drop or t.source == "aws-auto-tagging"
               for t in runtime.pipeline.get_file(rec.fileId).AITags)


def test_clip_family_tagger_works_too(runtime, astronaut, tiny):
    runtime.settings.zero_shot_model = tiny["clip"]
    rec = _file(runtime, astronaut)
    doc = run_job(runtime, {"fileId": rec.fileId, "extensions": [
        {"name": "google-auto-tagging", "minConfidence": 0, "maxTags": 30}]})
    assert doc["extensions"]["google-auto-tagging"]["status"] == "success"
    tags = runtime.pipeline.get_file(rec.fileId).AITags
    assert len(tags) == 7
    assert abs(sum(t.confidence for t in tags) - 100) < 0.1  # softmax shares over the vocabulary


def test_description_is_written_and_cleaned(runtime, astronaut):
    rec = _file(runtime, astronaut)
    doc = run_job(runtime, {"fileId": rec.fileId, "extensions": [{"name": "ai-auto-description"}]})
    assert doc["extensions"]["ai-auto-description"]["status"] == "success"
    text = runtime.pipeline.get_file(rec.fileId).description
    assert text and text[0].isupper() and text.endswith(".")
    for junk in ("[CLS]", "[SEP]", "[PAD]", "  ", "arafed"):
        assert junk not in text
    assert doc["extensions"]["ai-auto-description"]["output"] == {"description": text}
    assert runtime.pipeline.usage("default")["extensions"] == {"ai-auto-description": 8}


@pytest.mark.parametrize(("raw", "clean"), [
    ("arafed man sitting on a table [SEP]", "Man sitting on a table."),
    ("  a   red car , on the street ", "A red car, on the street."),
    ("[CLS] [PAD]", ""),
    ("a photo of a cat.", "A photo of a cat."),
])
def test_clean_caption(raw, clean):
    assert clean_caption(raw) == clean


def test_clean_label():
    assert clean_label("tabby, tabby cat") == "Tabby"
    assert clean_label("golden_retriever") == "Golden retriever"


@pytest.mark.parametrize("ext", [
    {"name": "aws-auto-tagging", "minConfidence": 0, "maxTags": 3},
    {"name": "ai-auto-description"},
])
def test_missing_model_names_the_pull_command(runtime, astronaut, ext):
    runtime.settings.classifier_model = "vit-base-imagenet"
    runtime.settings.caption_model = "blip-caption-base"
    rec = _file(runtime, astronaut)
    doc = run_job(runtime, {"fileId": rec.fileId, "extensions": [ext]})
    err = doc["extensions"][ext["name"]]["error"]
    assert err["code"] == "model_missing" and "extworker models pull" in err["message"]


def test_corrupt_image_fails_tagging_readably(runtime):
    rec = runtime.pipeline.add_file(b"nope", "x.jpg")
    doc = run_job(runtime, {"fileId": rec.fileId, "extensions": [
        {"name": "google-auto-tagging", "minConfidence": 0, "maxTags": 3}]})
    assert doc["extensions"]["google-auto-tagging"]["error"]["code"] == "invalid_image"


# --- devices -------------------------------------------------------------------


def test_auto_without_cuda_uses_cpu_and_says_so(monkeypatch, caplog):
    monkeypatch.setattr(devices, "cuda_devices", lambda: 0)
    devices._logged.clear()
    with caplog.at_level(logging.INFO, logger="worker.models.devices"):
        assert devices.torch_device("auto") == "cpu"
    assert "requested auto, using cpu (CUDA absent)" in caplog.text
    with pytest.raises(ExtworkerError, match="torch sees 0 CUDA"):
        devices.torch_device("cuda:0")


def test_auto_with_cuda_uses_it(monkeypatch):
    monkeypatch.setattr(devices, "cuda_devices", lambda: 2)
    assert devices.torch_device("auto") == "cuda:0"
    assert devices.torch_device("cuda:1") == "cuda:1"
    with pytest.raises(ExtworkerError):
        devices.torch_device("cuda:2")


def test_onnx_provider_offered_but_no_gpu_means_cpu(monkeypatch, caplog):
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(devices, "gpu_visible", lambda: False)
    devices._logged.clear()
    with caplog.at_level(logging.INFO, logger="worker.models.devices"):
        assert devices.onnx_providers("auto") == (["CPUExecutionProvider"], "cpu")
    assert "no GPU visible" in caplog.text
    monkeypatch.setattr(devices, "gpu_visible", lambda: True)
    providers, label = devices.onnx_providers("auto")
    assert label == "cuda:0" and providers[0][0] == "CUDAExecutionProvider"
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(ExtworkerError, match="no CUDA provider"):
        devices.onnx_providers("cuda")


def _cgroup(root, v2=None, v1=None):
    if v2 is not None:
        (root / "cpu.max").write_text(v2 + "\n")
    if v1 is not None:
        (root / "cpu").mkdir()
        (root / "cpu" / "cpu.cfs_quota_us").write_text(f"{v1[0]}\n")
        (root / "cpu" / "cpu.cfs_period_us").write_text(f"{v1[1]}\n")
    return root


@pytest.mark.parametrize(("v2", "v1", "limit"), [
    ("200000 100000", None, 2.0),
    ("150000 100000", None, 1.5),
    ("max 100000", None, None),
    (None, (50000, 100000), 0.5),
    (None, (-1, 100000), None),
    (None, None, None),
])
def test_cgroup_cpu_limit(tmp_path, v2, v1, limit):
    assert devices.cgroup_cpu_limit(_cgroup(tmp_path, v2, v1)) == limit


def test_inference_threads_share_the_container_cpus(tmp_path, settings):
    import os

    affinity = len(os.sched_getaffinity(0))
    root = _cgroup(tmp_path, "400000 100000")  # a 4-CPU limit
    assert devices.available_cpus(root) == min(affinity, 4)
    half = tmp_path / "half"
    half.mkdir()
    assert devices.available_cpus(_cgroup(half, "50000 100000")) == 1  # rounds up to one
    for processes in (1, 2, 8):
        s = settings.model_copy(update={"processes": processes, "inference_threads": 0})
        assert devices.inference_threads(s, root) == max(1, min(affinity, 4) // processes)
    s = settings.model_copy(update={"processes": 8, "inference_threads": 3})
    assert devices.inference_threads(s, root) == 3  # the setting wins


def test_rembg_session_gets_the_thread_budget(settings):
    from extensions.rembg_session import RembgModel

    model = RembgModel("u2netp", settings.models_dir, "cpu", threads=1)
    opts = model.session.get_session_options()
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (1, 1)


def test_torch_models_get_the_thread_budget(settings, tiny):
    import torch

    from extensions.vision import ImageClassifier

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        ImageClassifier(tiny["classifier"], settings.models_dir, "cpu", threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# --- the model cache -----------------------------------------------------------


def test_concurrent_gets_load_once():
    cache = ModelCache()
    barrier = threading.Barrier(8)
    results = []

    def loader():
        time.sleep(0.2)
        return object()

    def get():
        barrier.wait()
        results.append(cache.get("classifier:x", loader))

    threads = [threading.Thread(target=get) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.loads == 1 and len({id(r) for r in results}) == 1


def test_real_model_loads_once_under_threads(settings, tiny):
    cache = ModelCache()
    barrier = threading.Barrier(4)
    got = []

    def get():
        barrier.wait()
        got.append(loaders.get(cache, "classifier", tiny["classifier"], settings))

    threads = [threading.Thread(target=get) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.loads == 1 and len({id(m) for m in got}) == 1


def test_idle_models_unload():
    now, seen = [0.0], []
    cache = ModelCache(idle_ttl_s=60, clock=lambda: now[0], on_change=seen.append)
    cache.get("a:x", object)
    cache.get("b:y", object)
    now[0] = 50
    cache.get("a:x", object)  # used again: stays
    now[0] = 100
    assert cache.sweep() == ["b:y"]
    assert cache.loaded() == ["a:x"]
    cache.get("b:y", object)
    assert cache.loads == 3  # reloaded on demand
    assert seen == [1, 2, 1, 2]  # the loaded count after each load and unload


def test_preload(settings, tiny):
    settings.preload = [f"classifier:{tiny['classifier']}", "remove-bg:u2netp"]
    rt = Runtime(settings)
    assert loaders.preload(rt.models, settings) == settings.preload
    assert rt.models.loaded_names() == {tiny["classifier"], "u2netp"}


def test_batched_and_unbatched_outputs_agree(settings, tiny, astronaut):
    """The classifier and the zero-shot tagger give the same answers (float tolerance)
    whether images arrive alone or gathered into one forward pass; order never mixes."""
    from extensions.vision import ImageClassifier, ZeroShotTagger
    from tests.support import concurrently

    images = [astronaut.resize((64 + 16 * i, 64)).rotate(30 * i) for i in range(6)]
    labels = ("cat", "dog", "rocket", "person")
    for cls, call in ((ImageClassifier, lambda m, im: m.predict(im)),
                      (ZeroShotTagger, lambda m, im: m.predict(im, labels))):
        name = settings.classifier_model if cls is ImageClassifier else settings.zero_shot_model
        alone = cls(name, settings.models_dir, "cpu", max_batch=1)
        together = cls(name, settings.models_dir, "cpu", max_batch=8, max_wait_ms=200)
        expected = [call(alone, im) for im in images]
        got = concurrently(lambda im, m=together, c=call: c(m, im), images)
        assert max(together.batcher.batches) > 1  # really batched
        for i, want in enumerate(expected):
            have = dict(got[i])
            assert set(have) == {k for k, _ in want}
            for k, p in want:
                assert abs(have[k] - p) < 1e-4, (cls.__name__, i, k, have[k], p)


def test_batched_captions_equal_captions_alone(settings, tiny, astronaut):
    """The captioner's batched ``generate`` (greedy) writes each image's caption exactly as
    it would alone, for mixed token budgets."""
    from extensions.vision import Captioner
    from tests.support import concurrently

    images = [astronaut.resize((48 + 8 * i, 64)).rotate(45 * i) for i in range(6)]
    budgets = [8, 8, 12, 8, 12, 8]
    alone = Captioner(settings.caption_model, settings.models_dir, "cpu", max_batch=1)
    together = Captioner(settings.caption_model, settings.models_dir, "cpu", max_batch=8,
                         max_wait_ms=200)
    expected = [alone.predict(im, b) for im, b in zip(images, budgets, strict=True)]
    got = concurrently(lambda ib: together.predict(*ib), list(zip(images, budgets,
                                                                  strict=True)))
    assert max(together.batcher.batches) > 1
    assert len(set(expected)) > 1 and all(expected)  # real, differing captions
    assert got == expected
