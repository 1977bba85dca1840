"""The intake stream loses nothing and is never stalled by one entry.

Given raw stream entries — valid jobs mixed with garbage, JSON nested 100,000 deep, a
missing field — when the consumer polls, then every valid job is sent exactly once, every
unusable entry becomes a rejected job document naming the field, and nothing stays
pending. A consumer that stops with pending entries is not deleted; the stream is never
trimmed, and publishing beyond the cap is refused.
"""

from __future__ import annotations

import json
import random
import re

import pytest

from tests.support import ROOT
from worker.broker.intake import GROUP, IntakeConsumer, IntakeFull, publish
from worker.core.contract import ID_PATTERN
from worker.core.jsonlimits import top_level_string

DATA = ROOT / "tests" / "data"


@pytest.fixture
def stream(settings, rclient):
    return settings.keys.intake()


def drain(consumer: IntakeConsumer, rounds: int = 50) -> None:
    for _ in range(rounds):
        if consumer.poll_once(block_ms=10) == 0:
            return


def test_poisoned_entries_never_hold_back_the_batch(settings, rclient, stream):
    sent: list[dict] = []
    consumer = IntakeConsumer(rclient, settings, sent.append)
    poison = {
        "deep": "[" * 100_000,
        "deep-valid": "[" * 200 + "]" * 200,
        "deep-object": '{"a":' * 500 + "1" + "}" * 500,
        "not-json": "{nope",
        "array": "[1, 2]",
        "huge-unicode": '"\\ud800"',
    }
    entries = {}
    for i in range(30):
        if i % 5 == 0:
            kind = list(poison)[(i // 5) % len(poison)]
            entries[rclient.xadd(stream, {"job": poison[kind]}).decode()] = kind
        else:
            job = {"jobId": f"ok-{i}", "fileId": "f", "extensions": [{"name": "remove-bg"}]}
            entries[rclient.xadd(stream, {"job": json.dumps(job)}).decode()] = "ok"
    entries[rclient.xadd(stream, {"other": "x"}).decode()] = "no-field"
    drain(consumer)
    assert sorted(j["jobId"] for j in sent) == sorted(f"ok-{i}" for i in range(30) if i % 5)
    for eid, kind in entries.items():
        if kind == "ok":
            continue
        doc = json.loads(rclient.get(settings.keys.job(f"intake-{eid}")))
        assert doc["state"] == "rejected", kind
        assert re.match(r"invalid job: job(\S*): ", doc["error"]["message"]), doc["error"]
    assert rclient.xpending(stream, GROUP)["pending"] == 0
    assert rclient.xlen(stream) == 0


def test_fuzzed_entries_leave_nothing_pending(settings, runtime, rclient, stream):
    """1,000 raw messages, near-valid mutations of a job and garbage, through the intake
    and dispatch: each ends as a job document — dispatched, or rejected naming its field."""
    rng = random.Random(7)
    rec = runtime.pipeline.add_file(b"not an image", "f.txt")
    base = json.dumps({"jobId": "j", "fileId": rec.fileId, "extensions": [
        {"name": "remove-bg", "options": {"bg_color": "81d4fa"}},
        {"name": "google-auto-tagging", "minConfidence": 50, "maxTags": 5}],
        "webhookUrl": "http://127.0.0.1:9/hook", "removeAITags": ["a"]})
    consumer = IntakeConsumer(rclient, settings, runtime.pipeline.accept)
    entries = []
    for i in range(1000):
        raw = list(base.replace('"j"', f'"fuzz-{i}"'))
        for _ in range(rng.randint(0, 4)):  # flip, drop or insert a few characters
            pos = rng.randrange(len(raw))
            op = rng.choice("fdi")
            if op == "f":
                raw[pos] = chr(rng.randrange(32, 0x2FF))
            elif op == "d":
                del raw[pos]
            else:
                raw.insert(pos, rng.choice('[]{}",:\\0aé'))
        text = "".join(raw)
        if i % 10 == 0:
            text = rng.choice(["[" * 5000, "null", "", "\x00\xff", '{"a":' * 300 + "1"])
        elif i % 10 == 5:  # a valid top level with a jobId, and something unreadable inside
            deep = rng.choice([
                "[" * 65 + "]" * 65, "[" * 3000 + "]" * 3000, '{"a":' * 200 + "1" + "}" * 200,
                "[" * 100_000 + "]" * 100_000])
            text = base.replace('"j"', f'"fuzz-{i}"')[:-1] + f', "extra": {deep}}}'
            if i % 100 == 5:  # above the entry limit
                text = text[:-1] + ', "pad": "' + "x" * (4 * 1024 * 1024) + '"}'
        entries.append((rclient.xadd(stream, {"job": text.encode()}).decode(), text))

    drain(consumer, rounds=200)
    # A poisoned entry under the jobId of a job that exists: the job document stays.
    existing = next(f"fuzz-{n}" for n in range(1000)
                    if rclient.get(settings.keys.job(f"fuzz-{n}")))
    before = rclient.get(settings.keys.job(existing))
    rclient.xadd(stream, {"job": json.dumps({"jobId": existing})[:-1] + ', "y": '
                          + "[" * 70 + "]" * 70 + "}"})
    drain(consumer)
    assert rclient.get(settings.keys.job(existing)) == before  # never overwritten
    assert rclient.xpending(stream, GROUP)["pending"] == 0 and rclient.xlen(stream) == 0
    states = {"dispatched": 0, "rejected": 0}
    answered_under_own_id = 0
    for n, (eid, text) in enumerate(entries):
        if n % 10 == 5:  # built with its jobId
            job_id = f"fuzz-{n}"
        else:
            try:
                job_id = json.loads(text).get("jobId")
            except (ValueError, AttributeError, RecursionError):
                job_id = None
        own = isinstance(job_id, str) and re.fullmatch(ID_PATTERN, job_id) is not None
        # A valid top-level jobId is answered under that id — where its publisher looks —
        # and never under the entry's.
        raw_doc = rclient.get(settings.keys.job(job_id if own else f"intake-{eid}"))
        assert raw_doc is not None, text[:300]
        if own:
            assert rclient.get(settings.keys.job(f"intake-{eid}")) is None
            answered_under_own_id += n % 10 == 5
        doc = json.loads(raw_doc)
        states[doc["state"]] += 1
        if doc["state"] == "rejected":  # every error names its field
            field = r"(\S*\[\".*?\"\]\S*|\S+)"  # a name, quoted when it has odd characters
            assert re.match(rf"^invalid job: {field}: ", doc["error"]["message"]), doc
        for slot in doc["extensions"].values():
            assert slot["status"] in ("pending", "failed")
            if slot["status"] == "failed":
                assert re.match(r"^\S+: |^file not found|^extension ",
                                slot["error"]["message"]), slot
    assert states["dispatched"] > 100 and states["rejected"] > 100  # both kinds exercised
    assert answered_under_own_id == 100


def test_a_stopping_consumer_with_pending_entries_is_kept(settings, rclient, stream):
    def broker_down(job):
        raise ConnectionError("broker unavailable")

    for i in range(3):
        publish(rclient, settings, {"jobId": f"p{i}", "fileId": "f", "extensions": []})
    dying = IntakeConsumer(rclient, settings, broker_down)
    with pytest.raises(ConnectionError):
        dying.poll_once(block_ms=10)
    dying.leave()  # what run() does at shutdown
    assert rclient.xpending(stream, GROUP)["pending"] == 3  # still owned, claimable
    # Another worker claims them once they are idle long enough.
    sent: list[dict] = []
    heir = IntakeConsumer(rclient, settings, sent.append)
    import worker.broker.intake as intake

    old, intake.CLAIM_IDLE_MS = intake.CLAIM_IDLE_MS, 0
    try:
        drain(heir)
    finally:
        intake.CLAIM_IDLE_MS = old
    assert sorted(j["jobId"] for j in sent) == ["p0", "p1", "p2"]
    assert rclient.xpending(stream, GROUP)["pending"] == 0
    heir.leave()
    consumers = {c["name"].decode() for c in rclient.xinfo_consumers(stream, GROUP)}
    assert heir.consumer not in consumers and dying.consumer in consumers


def test_publish_refuses_past_the_cap_and_never_trims(settings, rclient, stream):
    settings.intake_maxlen = 5
    for i in range(5):
        publish(rclient, settings, {"jobId": f"q{i}", "fileId": "f", "extensions": []})
    with pytest.raises(IntakeFull, match="intake backlog is full"):
        publish(rclient, settings, {"jobId": "q5", "fileId": "f", "extensions": []})
    assert rclient.xlen(stream) == 5
    assert [json.loads(f[b"job"])["jobId"] for _, f in rclient.xrange(stream)] == [
        f"q{i}" for i in range(5)]


def test_the_fuzzers_stuck_entries_are_answered_under_their_own_job_id(settings, rclient,
                                                                      stream):
    """Issue 28's 104 entries, verbatim (``tests/data/fuzz-stuck.jsonl``, from a seeded
    hypothesis run): each has a valid top-level ``jobId`` placed *after* a part nested deeper
    than the limit. Each is rejected under that jobId, naming the too-deep path — never under
    ``intake-<entry id>``, where no publisher looks."""
    lines = (DATA / "fuzz-stuck.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines if line.strip()]
    assert len(entries) == 104
    consumer = IntakeConsumer(rclient, settings, lambda job: pytest.fail(f"sent {job}"))
    eids = [rclient.xadd(stream, {e["field"]: e["job"].encode()}).decode() for e in entries]
    drain(consumer, rounds=20)
    assert rclient.xpending(stream, GROUP)["pending"] == 0 and rclient.xlen(stream) == 0
    for entry, eid in zip(entries, eids, strict=True):
        assert rclient.get(settings.keys.job(f"intake-{eid}")) is None, entry["jobId"]
        doc = json.loads(rclient.get(settings.keys.job(entry["jobId"])))
        assert doc["jobId"] == entry["jobId"] and doc["state"] == "rejected"
        assert re.match(r"^invalid job: job\.\S+…?: JSON nested deeper than 64 levels$",
                        doc["error"]["message"]), doc["error"]


@pytest.mark.parametrize("text, expected", [
    ('{"a": [[1]], "jobId": "last"}', "last"),
    ('{"jobId": "first", "a": {"b": 1}}', "first"),
    ('{"a": {"jobId": "nested"}}', None),
    ('{"jobId": "x", "jobId": "again"}', "again"),  # the last wins, as in json.loads
    ('{"jobId": 5}', None),
    ('{"jobId": "cut"', None),
])
def test_top_level_string_wherever_the_key_stands(text, expected):
    assert top_level_string(text.encode(), "jobId") == expected
