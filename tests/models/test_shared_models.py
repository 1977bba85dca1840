"""One copy of each model per node: the inference process, its clients, and serve with it.

A real spawned inference process (the same ``InferenceProcess`` serve starts) on the CPU with
the real u2netp and the tiny transformers models; results through it equal the local
models'; calls from many threads meet in one batch there; errors keep their kind; a killed
process is restarted and its clients reconnect; and a real ``serve --processes 2`` loads each
model once for the node.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from extensions import loaders
from extensions.rembg_session import RembgModel
from extensions.vision import Captioner, ImageClassifier, ZeroShotTagger
from tests.support import PHOTOS, Server, concurrently, jpeg, photo, sustained, wait_until
from worker.core.errors import PermanentError, RetryableError
from worker.models.cache import ModelCache
from worker.models.ref import ModelRef
from worker.models.remote import InferenceClient
from worker.runtime import InferenceProcess

U2NETP, U2NET = ModelRef.parse("remove-bg:u2netp"), ModelRef.parse("remove-bg:u2net")
FAST = ModelRef.parse("remove-bg:fast")  # the stand-in model of the load test


@pytest.fixture
def inference(settings):
    s = settings.model_copy(update={"preload": ["remove-bg:u2netp"], "batch_max_wait_ms": 50.0})
    proc = InferenceProcess(s)  # returns once it listens
    client = InferenceClient(proc.address, proc.authkey, timeout_s=60, connect_wait_s=0)
    assert _answers(client)
    yield proc, client, s
    proc.stop()


def _answers(client: InferenceClient) -> bool:
    try:
        client.call(U2NETP, "describe")
        return True
    except RetryableError:
        return False


def _same(got: list[tuple[str, float]], want: list[tuple[str, float]]) -> None:
    assert [label for label, _ in got] == [label for label, _ in want]
    assert all(abs(g - w) < 1e-4 for (_, g), (_, w) in zip(got, want, strict=True))


def test_results_through_the_inference_process_equal_the_local_models(inference, tiny):
    proc, client, s = inference
    cache = ModelCache(remote=client)
    remote = {kind: loaders.get(cache, kind, name, s) for kind, name in (
        ("remove-bg", "u2netp"), ("classifier", tiny["classifier"]),
        ("zero-shot", tiny["siglip"]), ("captioner", tiny["captioner"]))}
    local_bg = RembgModel("u2netp", s.models_dir, "cpu", threads=1)
    classifier = ImageClassifier(tiny["classifier"], s.models_dir, "cpu")
    zero_shot = ZeroShotTagger(tiny["siglip"], s.models_dir, "cpu")
    captioner = Captioner(tiny["captioner"], s.models_dir, "cpu")
    labels = ("a cat", "a rocket", "a cup of coffee")
    for name in PHOTOS[:3]:
        im = photo(name)
        a = np.asarray(remote["remove-bg"].mask(im), np.int16)
        b = np.asarray(local_bg.mask(im), np.int16)
        assert a.shape == b.shape and np.abs(a - b).max() <= 1, name
        small = im.resize((128, 128))  # below decode_side: sent as it is
        _same(remote["classifier"].predict(small), classifier.predict(small))
        _same(remote["zero-shot"].predict(small, labels), zero_shot.predict(small, labels))
        assert remote["captioner"].predict(small, 5) == captioner.predict(small, 5)
    # The trained default tagger too: its tags and its embedding, from one call.
    from extensions.imagenet_tagger import ImageNetTagger

    far = loaders.get(cache, "imagenet", s.imagenet_model, s)
    near = ImageNetTagger(s.imagenet_model, s.models_dir, "cpu")
    im = photo(PHOTOS[0]).resize((200, 200))
    (tags, emb), (want, want_emb) = far.predict_and_embed(im), near.predict_and_embed(im)
    _same(tags[:20], want[:20])
    assert np.allclose(emb, want_emb, atol=1e-4) and not hasattr(far, "session")
    assert remote["remove-bg"].device == "cpu"
    # This process holds proxies only: no session, no torch module.
    assert not hasattr(remote["remove-bg"], "session")
    assert not hasattr(remote["classifier"], "model")


def test_calls_from_many_threads_meet_in_one_batch_there(inference):
    _, client, s = inference
    model = loaders.get(ModelCache(remote=client), "remove-bg", "u2netp", s)
    images = [photo(n).resize((640, 480)) for n in PHOTOS]
    alone = RembgModel("u2netp", s.models_dir, "cpu", threads=1)
    got = concurrently(lambda im: np.asarray(model.mask(im), np.int16), images)
    for name, im, g in zip(PHOTOS, images, got, strict=True):
        assert isinstance(g, np.ndarray), g
        assert np.abs(g - np.asarray(alone.mask(im), np.int16)).max() <= 1, name
    assert max(client.call(U2NETP, "describe")["batches"]) > 1


def test_under_sustained_load_its_batches_stay_full_and_no_call_starves(tmp_path):
    """The inference server's own transport and connection threads, a model that batches 4
    at most with a 20 ms forward pass, 12 worker threads calling in a loop for 3 s — always
    more queued than one batch takes: the batches stay full and no call waits more than a
    few batch times (the first leader used to keep draining the queue while its own
    caller's answer waited for the whole run)."""
    import secrets
    import threading
    import time

    from worker.models.batching import MicroBatcher
    from worker.models.remote import InferenceServer

    class Fast:
        device = "cpu"

        def __init__(self) -> None:
            self.batcher = MicroBatcher(self._forward, max_batch=4, max_wait_s=0.005)

        def _forward(self, xs):
            time.sleep(0.02)
            return [x * 2 for x in xs]

        def infer(self, x):
            return self.batcher.submit(x)

    model, key, address = Fast(), secrets.token_bytes(32), str(tmp_path / "inference.sock")
    server = InferenceServer(address, key, lambda k: model)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = InferenceClient(address, key, timeout_s=30, connect_wait_s=5)
    worst, wrong = sustained(lambda x: client.call(FAST, "infer", x), threads=12,
                             seconds=3.0)
    assert not wrong
    # 3 batches a cycle (60 ms); 10 cycles of slack for a loaded 2-core CI machine (seen:
    # 0.33 s there) — the starvation this guards against waited for the whole 3 s run.
    assert max(worst) < 0.6, sorted(worst)[-3:]
    sizes = list(model.batcher.batches)
    assert sum(sizes) / len(sizes) >= 3.5, sizes[-20:]


def test_errors_keep_their_kind_and_a_dead_process_comes_back(inference):
    proc, client, s = inference
    with pytest.raises(PermanentError, match="extworker models pull u2net") as missing:
        client.call(U2NET, "describe")
    assert missing.value.code == "model_missing"
    with pytest.raises(PermanentError, match="no method"):
        client.call(U2NETP, "__init__")
    proc.process.kill()
    proc.process.join(5)
    with pytest.raises(RetryableError, match="inference server at .* unavailable"):
        client.call(U2NETP, "describe")
    patient = InferenceClient(proc.address, proc.authkey, timeout_s=60, connect_wait_s=30)
    assert patient.call(U2NETP, "describe")["device"] == "cpu"  # waits for it
    assert proc.restarts == 1


def test_a_wrong_key_is_refused(inference):
    proc, _, _ = inference
    stranger = InferenceClient(proc.address, b"not the key", timeout_s=5)
    with pytest.raises(RetryableError):
        stranger.call(U2NETP, "describe")
    _, client, _ = inference
    assert _answers(client)  # the server goes on serving the others


def test_one_process_per_device_threads_spread_and_fail_over(settings):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from worker.runtime import inference_env

    s = settings.model_copy(update={"preload": ["remove-bg:u2netp"]})
    first = InferenceProcess(s)
    second = InferenceProcess(s, first.authkey)  # as serve starts one per GPU, one key
    try:
        env = inference_env([first, second])
        client = InferenceClient(env["EXTWORKER_INFERENCE_ADDRESS"], first.authkey,
                                 timeout_s=60, connect_wait_s=30)
        barrier = threading.Barrier(4)

        def ask(_: int) -> object:
            barrier.wait()  # four threads, each with its own connection
            try:
                return client.call(U2NETP, "describe")["pid"]
            except RetryableError as e:
                return e

        with ThreadPoolExecutor(4) as pool:
            pids = list(pool.map(ask, range(4)))
            assert set(pids) == {first.process.pid, second.process.pid}  # spread over both
            first.stop()  # that device's process is gone for good
            after = list(pool.map(ask, range(4)))
            # The threads that were on it fail once (retryable: dramatiq retries the job),
            # the others never notice; on their next call all reach the survivor.
            lost = [a for a in after if isinstance(a, RetryableError)]
            assert len(lost) == pids.count(first.process.pid), after
            assert list(pool.map(ask, range(4))) == [second.process.pid] * 4
    finally:
        first.stop()
        second.stop()


@pytest.mark.slow
def test_serve_with_shared_models_loads_each_model_once_per_node(settings, rclient, tmp_path,
                                                                 astronaut):
    server = Server(settings, tmp_path / "serve.log", "--processes", "2",
                    env={"EXTWORKER_SHARED_MODELS": "on", "EXTWORKER_THREADS": "2"})
    try:
        blobs = settings.data_dir / "blobs" / "incoming"
        blobs.mkdir(parents=True, exist_ok=True)
        (blobs / "a.jpg").write_bytes(jpeg(astronaut))
        jobs = [f"shared-{i}" for i in range(6)]
        for job_id in jobs:
            rclient.xadd(settings.keys.intake(), {"job": json.dumps({
                "jobId": job_id, "upload": {"blobKey": "incoming/a.jpg", "fileName": "a.jpg",
                                            "useUniqueFileName": True},
                "extensions": [{"name": "remove-bg"},
                               {"name": "google-auto-tagging", "minConfidence": 0,
                                "maxTags": 3}]})})

        def finished() -> bool:
            docs = [json.loads(rclient.get(settings.keys.job(j)) or "{}") for j in jobs]
            return all(d.get("extensions") and all(
                x["status"] == "success" for x in d["extensions"].values()) for d in docs)

        wait_until(finished, 120, "every job to succeed through the inference process")
        log = (tmp_path / "serve.log").read_text()
        assert log.count("loaded rembg model u2netp") == 1, log[-3000:]
        assert log.count("(ZeroShotTagger)") == 1, log[-3000:]  # google's default tagger
        assert '"attempt": 2' not in log  # no job waited for the inference process
        assert "inference server listening" in log
        # Its batches reach the pod's /metrics like the workers' samples do.
        import httpx

        text = httpx.get(f"http://127.0.0.1:{server.http_port}/metrics", timeout=10).text
        counts = [line for line in text.splitlines()
                  if line.startswith('extworker_inference_batch_size_count{model="u2netp"}')]
        assert counts and float(counts[0].split()[-1]) >= 1, text[-2000:]
    finally:
        server.stop()
    time.sleep(0.5)


def test_one_inference_process_per_visible_gpu(settings, monkeypatch):
    from worker.cli.jobs import shared_models
    from worker.runtime import inference_devices

    def devices(device: str, visible: str | None) -> list[str]:
        if visible is None:
            monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        else:
            monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        return inference_devices(settings.model_copy(update={"device": device}))

    assert devices("cuda", "0,1") == ["cuda:0", "cuda:1"]
    assert devices("auto", "3") == ["cuda:0"]  # indices as the process sees them
    assert devices("cuda:1", "0,1") == ["cuda:1"]
    assert devices("cpu", "0,1") == ["cpu"]
    assert devices("auto", "-1") == ["auto"]  # no GPU: one process, on what auto picks
    for mode, expected in (("on", True), ("off", False)):
        assert shared_models(settings.model_copy(update={"shared_models": mode})) is expected
    # auto: never on a CPU-only setting, whatever is visible
    assert not shared_models(settings.model_copy(update={"shared_models": "auto",
                                                         "device": "cpu"}))


def test_readyz_says_when_an_inference_process_does_not_answer(inference, rclient):
    from worker.runtime import inference_env
    from worker.telemetry.ops import check_ready

    proc, _, s = inference
    env = inference_env([proc])
    pod = s.model_copy(update={"inference_address": env["EXTWORKER_INFERENCE_ADDRESS"],
                               "inference_key": env["EXTWORKER_INFERENCE_KEY"], "preload": []})
    assert check_ready(rclient, pod) == (True, [])
    proc.stop()
    ok, problems = check_ready(rclient, pod)
    assert not ok and problems and "does not answer" in problems[0]


def test_a_key_that_is_not_a_model_ref_is_refused_and_the_connection_lives(inference):
    _, client, _ = inference
    with pytest.raises(PermanentError, match="is not a ModelRef"):
        client.call("remove-bg:u2netp", "describe")  # type: ignore[arg-type]
    assert client.call(U2NETP, "describe")["device"] == "cpu"  # the same connection serves on
