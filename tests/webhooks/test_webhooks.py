"""Webhook delivery against local receivers, with an injected clock (no real waiting
except where the 30-second exchange limit itself is under test)."""

from __future__ import annotations

import json
import signal
import time

import pytest
from imagekitio import ImageKit
from standardwebhooks import Webhook, WebhookVerificationError

from tests.support import report_duplicates, wait_until
from tests.support.receiver import Receiver, Reply
from webhooks.deliverer import Webhooks
from webhooks.schedule import DEFAULT_DELAYS_S


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def receiver():
    holder: list[Receiver] = []

    def make(script=None) -> Receiver:
        r = Receiver(script)
        holder.append(r)
        return r

    yield make
    for r in holder:
        r.close()


def _enqueue(hooks: Webhooks, url: str, job: str = "job-1", status: str = "success",
             account: str = "acme") -> dict:
    doc = hooks.enqueue(
        account=account, url=url, job_id=job, file_id="file-1", service="remove-bg",
        status=status, file_object={"fileId": "file-1", "versionInfo": {"name": "Version 2"}}
        if status == "success" else None,
        error=None if status == "success" else {"message": "boom", "code": "invalid_image"})
    assert doc is not None
    return doc


def _walk(hooks: Webhooks, clock: Clock, delivery_id: str, max_steps: int = 20) -> dict:
    """Run attempts, jumping the clock to each next due time, until the delivery is final."""
    for _ in range(max_steps):
        hooks.run_due()
        doc = hooks.store.get(delivery_id)
        if doc["status"] != "pending":
            return doc
        clock.t = doc["nextAt"] / 1000
    raise AssertionError("delivery never became final")


def _offsets_ok(doc: dict, delays=DEFAULT_DELAYS_S) -> None:
    ats = [a["at"] for a in doc["attempts"]]
    for k in range(1, len(ats)):
        gap = (ats[k] - ats[k - 1]) / 1000
        assert 0.8 * delays[k] - 0.01 <= gap <= 1.2 * delays[k] + 0.01, (k, gap)


@pytest.mark.parametrize("failures", [0, 1, 3])
def test_fails_n_times_then_200_gives_n_plus_1_attempts_on_schedule(
        settings, rclient, receiver, failures):
    recv = receiver(lambda n: Reply(500) if n < failures else Reply(200))
    clock = Clock()
    hooks = Webhooks(rclient, settings, clock=clock)
    doc = _walk(hooks, clock, _enqueue(hooks, recv.url)["id"])
    assert doc["status"] == "delivered" and len(recv.requests) == failures + 1
    assert [a["status"] for a in doc["attempts"]] == [500] * failures + [200]
    _offsets_ok(doc)
    bodies = {r.body for r in recv.requests}
    assert len(bodies) == 1  # the same bytes on every attempt
    assert {r.headers["webhook-id"] for r in recv.requests} == {doc["id"]}
    assert json.loads(bodies.pop())["fileObject"]["versionInfo"]["name"] == "Version 2"


def test_receiver_down_for_the_whole_schedule_is_exhausted_then_redelivered(
        settings, rclient, receiver):
    up = {"on": False}
    recv = receiver(lambda n: Reply(200) if up["on"] else Reply(503))
    clock = Clock()
    hooks = Webhooks(rclient, settings, clock=clock)
    first = clock.t
    doc = _walk(hooks, clock, _enqueue(hooks, recv.url)["id"])
    assert doc["status"] == "exhausted" and len(doc["attempts"]) == len(DEFAULT_DELAYS_S) == 8
    _offsets_ok(doc)
    span_h = (doc["attempts"][-1]["at"] / 1000 - first) / 3600
    assert 19.2 <= span_h <= 28.8  # ~24 h (each delay ±20 %)
    assert rclient.zscore(hooks.store.dead, doc["id"]) is not None
    assert int(rclient.hget(hooks.store.stats, "exhausted")) == 1
    up["on"] = True
    again = hooks.redeliver(doc["id"])
    assert again["status"] == "pending" and again["series"] == 2
    hooks.run_due()
    final = hooks.store.get(doc["id"])
    assert final["status"] == "delivered" and len(final["attempts"]) == 9
    assert recv.requests[-1].headers["webhook-id"] == doc["id"]
    assert rclient.zscore(hooks.store.dead, doc["id"]) is None


def test_slow_receivers_fail_at_thirty_seconds(settings, rclient, receiver):
    assert settings.webhook_timeout_s == 30
    silent = receiver(lambda n: Reply(200, delay_s=31))
    trickle = receiver(lambda n: Reply(200, trickle_s=0.5))
    hooks = Webhooks(rclient, settings, clock=Clock())
    a = _enqueue(hooks, silent.url, job="silent")["id"]
    b = _enqueue(hooks, trickle.url, job="trickle")["id"]
    t0 = time.monotonic()
    hooks.run_due()  # both at once
    assert time.monotonic() - t0 < 33
    for did in (a, b):
        att = hooks.store.get(did)["attempts"][0]
        assert 29_500 <= att["durationMs"] <= 31_500, att
        assert att["error"] == "no complete response within 30 s"
        assert hooks.store.get(did)["status"] == "pending"  # retried on schedule


def test_redirect_not_followed(settings, rclient, receiver):
    target = receiver()
    hop = receiver(lambda n: Reply(302, headers={"Location": target.url}))
    hooks = Webhooks(rclient, settings, clock=Clock())
    did = _enqueue(hooks, hop.url)["id"]
    hooks.run_due()
    doc = hooks.store.get(did)
    assert doc["attempts"][0]["error"] == "HTTP 302 (redirects are not followed)"
    assert doc["status"] == "pending" and target.requests == []


def test_410_stops_retrying(settings, rclient, receiver):
    recv = receiver(lambda n: Reply(410))
    clock = Clock()
    hooks = Webhooks(rclient, settings, clock=clock)
    did = _enqueue(hooks, recv.url)["id"]
    hooks.run_due()
    clock.t += 10 * 86400
    hooks.run_due()
    doc = hooks.store.get(did)
    assert doc["status"] == "gone" and len(recv.requests) == 1 and doc["nextAt"] is None


@pytest.mark.parametrize(("retry_after", "low", "high"),
                         [("7", 7, 7), ("1", 4, 6), ("3600", 8, 12)])
def test_retry_after_is_honoured_within_bounds(settings, rclient, receiver, retry_after,
                                               low, high):
    recv = receiver(lambda n: Reply(429, headers={"Retry-After": retry_after}))
    clock = Clock()
    hooks = Webhooks(rclient, settings, clock=clock)
    did = _enqueue(hooks, recv.url)["id"]
    hooks.run_due()  # attempt 1 at t; next is scheduled at 5 s ±20 %
    doc = hooks.store.get(did)
    delay = (doc["nextAt"] - doc["attempts"][0]["at"]) / 1000
    assert low - 0.01 <= delay <= high + 0.01


def test_signatures_verify_with_standardwebhooks_and_rotation(settings, rclient, receiver):
    settings.webhook_secret_grace_s = 1
    settings.webhook_legacy_signature = True
    recv = receiver()
    hooks = Webhooks(rclient, settings)  # real clock: verify() checks the timestamp
    old = hooks.secrets.current("acme")
    assert old.startswith("whsec_") and hooks.secrets.current("acme") == old
    _enqueue(hooks, recv.url, job="before")
    hooks.run_due()
    req = recv.requests[0]
    assert Webhook(old).verify(req.body, req.headers)["status"] == "SUCCESS"
    sdk = ImageKit(private_key="unused", base_url="http://127.0.0.1:9").webhooks
    event = sdk.unwrap(req.body.decode(), headers=req.headers, key=old)  # the SDK's way
    assert event.to_dict()["status"] == "SUCCESS"
    import base64
    import hashlib
    import hmac
    t, v1 = (p.split("=", 1)[1] for p in req.headers["x-ik-signature"].split(","))
    expected = hmac.new(base64.b64decode(old[6:]), f"{t}.".encode() + req.body,
                        hashlib.sha256).hexdigest()
    assert v1 == expected

    new = hooks.secrets.rotate("acme")
    _enqueue(hooks, recv.url, job="grace")
    hooks.run_due()
    req = recv.requests[1]
    assert len(req.headers["webhook-signature"].split(" ")) == 4  # 2 secrets × 2 readings
    Webhook(new).verify(req.body, req.headers)
    Webhook(old).verify(req.body, req.headers)
    sdk.unwrap(req.body.decode(), headers=req.headers, key=new)
    sdk.unwrap(req.body.decode(), headers=req.headers, key=old)

    time.sleep(1.1)
    _enqueue(hooks, recv.url, job="after")
    hooks.run_due()
    req = recv.requests[2]
    assert len(req.headers["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(req.body, req.headers)
    sdk.unwrap(req.body.decode(), headers=req.headers, key=new)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(req.body, req.headers)
    with pytest.raises(WebhookVerificationError):
        sdk.unwrap(req.body.decode(), headers=req.headers, key=old)


def test_secrets_are_encrypted_at_rest(settings, rclient):
    settings.secret_key = "correct horse battery staple"
    hooks = Webhooks(rclient, settings)
    secret = hooks.secrets.current("acme")
    raw = rclient.get(settings.keys.webhook_secret("acme")).decode()
    assert "whsec_" not in raw and secret[6:] not in raw
    assert Webhooks(rclient, settings).secrets.current("acme") == secret
    settings.secret_key = "wrong"
    with pytest.raises(RuntimeError, match="does not decrypt"):
        Webhooks(rclient, settings).secrets.current("acme")


def test_large_response_read_is_bounded_and_logged(settings, rclient, receiver):
    recv = receiver(lambda n: Reply(200, body=b"y" * 2_000_000))
    hooks = Webhooks(rclient, settings, clock=Clock())
    did = _enqueue(hooks, recv.url)["id"]
    hooks.run_due()
    doc = hooks.store.get(did)
    assert doc["status"] == "delivered" and doc["attempts"][0]["response"] == "y" * 1024


def test_refused_url_is_never_contacted(settings, rclient, receiver):
    recv = receiver()
    settings.egress_allowlist = None
    hooks = Webhooks(rclient, settings, clock=Clock())
    did = _enqueue(hooks, recv.url)["id"]
    hooks.run_due()
    doc = hooks.store.get(did)
    assert doc["status"] == "refused" and recv.requests == []
    assert "loopback" in doc["attempts"][0]["error"]


def test_duplicate_event_is_one_delivery(settings, rclient, receiver):
    recv = receiver()
    hooks = Webhooks(rclient, settings, clock=Clock())
    _enqueue(hooks, recv.url)
    assert hooks.enqueue(account="acme", url=recv.url, job_id="job-1", file_id="file-1",
                         service="remove-bg", status="success", file_object={},
                         error=None) is None
    hooks.run_due()
    assert len(recv.requests) == 1


def test_expired_lease_is_claimed_again(settings, rclient, receiver):
    """A worker that claimed and died: after the lease, another worker attempts it."""
    recv = receiver()
    clock = Clock()
    hooks = Webhooks(rclient, settings, clock=clock)
    did = _enqueue(hooks, recv.url)["id"]
    lease, ids = hooks.store.claim(hooks.now_ms(), 90_000, 10)  # ...and then it died
    assert ids == [did]
    assert hooks.run_due() == 0  # leased: nobody else touches it
    clock.t += 91
    assert hooks.run_due() == 1
    assert hooks.store.get(did)["status"] == "delivered"
    # The dead worker's late finish is refused: it no longer holds the lease.
    assert not hooks.store.finish(hooks.store.get(did), lease, None, False, hooks.now_ms())


def test_cli_delivery_log(settings, rclient, receiver):
    from tests.support import cli

    recv = receiver(lambda n: Reply(500, body=b"nope"))
    hooks = Webhooks(rclient, settings)
    did = _enqueue(hooks, recv.url)["id"]
    hooks.run_due()
    listed = json.loads(cli(settings, "deliveries", "list", "--file-id", "file-1").stdout)
    assert [d["id"] for d in listed] == [did] and listed[0]["status"] == "pending"
    assert json.loads(cli(settings, "deliveries", "list", "--status", "delivered").stdout) == []
    shown = json.loads(cli(settings, "deliveries", "show", did).stdout)
    att = shown["attempts"][0]
    assert att["status"] == 500 and att["response"] == "nope" and att["durationMs"] >= 0
    proc = cli(settings, "deliveries", "redeliver", did, check=False)
    assert proc.returncode == 1 and "still pending" in proc.stderr
    s1 = json.loads(cli(settings, "secrets", "show", "acme").stdout)["secret"]
    s2 = json.loads(cli(settings, "secrets", "rotate", "acme").stdout)["secret"]
    assert s1.startswith("whsec_") and s2 != s1
    assert json.loads(cli(settings, "secrets", "show", "acme").stdout)["secret"] == s2


@pytest.mark.slow
def test_worker_killed_after_claiming_loses_nothing(settings, rclient, receiver, tmp_path):
    from tests.support import Server

    settings.webhook_timeout_s = 2
    settings.webhook_lease_s = 4
    seen_first = {"at": None}

    def script(n: int) -> Reply:
        if n == 0:
            seen_first["at"] = time.time()
            return Reply(200, delay_s=60)  # hold the first attempt open
        return Reply(200)

    recv = receiver(script)
    hooks = Webhooks(rclient, settings)
    did = _enqueue(hooks, recv.url)["id"]
    env = {"EXTWORKER_WEBHOOK_TIMEOUT_S": "2", "EXTWORKER_WEBHOOK_LEASE_S": "4"}
    first = Server(settings, tmp_path / "w1.log", "--queues", "webhooks", env=env)
    deadline = time.time() + 30
    while seen_first["at"] is None and time.time() < deadline:
        time.sleep(0.05)
    assert seen_first["at"] is not None, (tmp_path / "w1.log").read_text()
    first.kill(signal.SIGKILL)  # mid-attempt, after the claim
    second = Server(settings, tmp_path / "w2.log", "--queues", "webhooks", env=env)
    try:
        deadline = time.time() + 30
        while hooks.store.get(did)["status"] != "delivered" and time.time() < deadline:
            time.sleep(0.1)
        doc = hooks.store.get(did)
        assert doc["status"] == "delivered", (tmp_path / "w2.log").read_text()
        # The attempt cut by the kill is sent again (same id): one duplicate, counted.
        report_duplicates("webhook worker killed mid-attempt", 1, len(recv.requests) - 1)
        assert len(recv.requests) == 2
        assert {r.headers["webhook-id"] for r in recv.requests} == {did}
    finally:
        second.stop()


# --- failure isolation and bounds (issue: nothing stuck, nothing lost) ----------------


class _FlakyClient:
    """Wraps a Redis client; the Nth round trip (command or pipeline) raises."""

    def __init__(self, client, fail_at: int) -> None:
        self._client, self.fail_at, self.trips = client, fail_at, 0

    def _trip(self) -> None:
        self.trips += 1
        if self.trips == self.fail_at:
            import redis as _redis

            raise _redis.ConnectionError("connection lost (simulated)")

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if name == "pipeline":
            def pipeline(*a, **k):
                pipe = attr(*a, **k)
                real = pipe.execute

                def execute(*ea, **ek):
                    self._trip()
                    return real(*ea, **ek)

                pipe.execute = execute
                return pipe
            return pipeline
        if callable(attr) and name not in ("register_script",):
            def call(*a, **k):
                self._trip()
                return attr(*a, **k)
            return call
        return attr

    def register_script(self, script):
        sc = self._client.register_script(script)
        outer = self

        class Script:
            def __call__(self, *a, **k):
                outer._trip()
                return sc(*a, **k)

        return Script()


@pytest.mark.parametrize("fail_at", [1, 2, 3])
def test_a_delivery_is_never_stored_without_being_due(settings, rclient, fail_at):
    """Redis lost at any round trip of ``create``: either nothing was stored, or the
    delivery is due — so the retried hand-off always ends with a due delivery."""
    from webhooks.store import DeliveryStore

    flaky = DeliveryStore(_FlakyClient(rclient, fail_at), settings.keys)
    doc = {"id": "msg_x", "createdAt": 1, "fileId": "f", "jobId": "j", "status": "pending"}
    try:
        flaky.create(doc, 5)
    except Exception:
        pass
    store = DeliveryStore(rclient, settings.keys)
    store.create(doc, 5)  # the hand-off, retried
    assert rclient.zscore(store.due, "msg_x") == 5


def test_the_log_and_dead_letters_are_trimmed_in_one_call(settings, rclient):
    from webhooks.store import DeliveryStore

    store = DeliveryStore(rclient, settings.keys, log_max=10)
    for i in range(30):
        doc = {"id": f"d{i}", "createdAt": i, "fileId": "f", "jobId": "j", "status": "pending"}
        assert store.create(doc, 10 ** 12)
        if i < 25:  # final: no longer due, exhausted
            rclient.zrem(store.due, f"d{i}")
            rclient.zadd(store.dead, {f"d{i}": i})
    assert rclient.zcard(store.index) == 10 and rclient.zcard(store.dead) <= 10
    assert all(rclient.zscore(store.index, f"d{i}") is not None for i in range(25, 30))
    assert rclient.get(store.doc_key("d0")) is None
    assert [d["id"] for d in store.list(limit=3)] == ["d29", "d28", "d27"]


def test_one_account_with_a_broken_secret_blocks_nobody(settings, rclient, receiver):
    settings.secret_key = "passphrase"
    recv = receiver()
    clock = Clock()
    hooks = Webhooks(rclient, settings, clock=clock)
    good = _enqueue(hooks, recv.url, job="j-good", account="good")
    bad = _enqueue(hooks, recv.url, job="j-bad", account="bad")
    hooks.secrets.current("bad")
    key = hooks.secrets._key("bad")
    rclient.set(key, json.dumps({"current": "gAAAAA-not-a-token", "previous": None,
                                 "rotatedAt": None}))
    rclient.zadd(hooks.store.due, {"msg_orphan": 0})  # a due id whose document is gone
    hooks.run_due()
    assert hooks.store.get(good["id"])["status"] == "delivered"
    after = hooks.store.get(bad["id"])
    assert after["status"] == "pending" and after["attempt"] == 1
    assert after["lastError"].startswith("cannot sign:")
    assert rclient.zscore(hooks.store.due, "msg_orphan") is None
    assert len(recv.requests) == 1


class SlowlyResolved(Webhooks):
    """Webhooks whose URL check takes 1.2 s, as a slow resolver would: time passes between
    the claim and the attempts."""

    def _check(self, url: str):
        time.sleep(1.2)
        return super()._check(url)


def test_two_workers_never_send_a_webhook_twice_when_a_batch_outlives_the_lease(
        settings, rclient, receiver):
    """48 deliveries to a receiver that answers in 1 s, two workers at once, a lease only
    1.5 × the attempt timeout: a claim is sized to what fits in the lease, an attempt that
    could outlast its lease renews it before it starts, and each attempt is recorded as it
    ends — so no webhook-id is sent twice (before: 48 claimed at once, 6 s of work,
    re-claimed; then, with rounds of lease // timeout and no margin, 1 and 4 of 48)."""
    import threading

    settings.webhook_timeout_s, settings.webhook_lease_s = 2.0, 3.0
    recv = receiver(lambda n: Reply(200, delay_s=1.0))
    # 1.2 s between each claim and its attempts (a slow resolver): past lease - timeout.
    hooks = [SlowlyResolved(rclient, settings) for _ in range(2)]
    ids = [_enqueue(hooks[0], recv.url, job=f"j{i}")["id"] for i in range(48)]
    deadline = time.monotonic() + 30

    def work(h: Webhooks) -> None:
        while time.monotonic() < deadline:
            if h.run_due() == 0 and all(
                    h.store.get(i)["status"] == "delivered" for i in ids):
                return
            time.sleep(0.05)

    threads = [threading.Thread(target=work, args=(h,)) for h in hooks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    sent = [r.headers["webhook-id"] for r in recv.requests]
    report_duplicates("two workers, batches longer than the lease", len(set(sent)),
                      len(sent) - len(set(sent)))
    assert sorted(set(sent)) == sorted(ids), "every delivery sent"
    assert len(sent) == len(ids), f"{len(sent) - len(ids)} duplicate sends"
    assert all(hooks[0].store.get(i)["attempt"] == 1 for i in ids)


def test_no_attempt_runs_outside_its_lease(settings, rclient, receiver):
    """Given a lease of 1.5 × the attempt timeout and 1.2 s between the claim and the
    attempts, when a worker sends 16 deliveries to a 1 s receiver, then each delivery is
    still claimed when its request arrives and still claimed when the receiver answers —
    no other worker could claim it and send it again meanwhile — and each is recorded
    once, delivered."""
    settings.webhook_timeout_s, settings.webhook_lease_s = 2.0, 3.0
    hooks = SlowlyResolved(rclient, settings)
    cover: list[float] = []  # ms of claim left, at each arrival and just before each answer
    box: list = []

    def claim_left(hook_id: str) -> float:
        return rclient.zscore(hooks.store.due, hook_id) - time.time() * 1000

    def script(n: int) -> Reply:
        hook_id = box[0].requests[n].headers["webhook-id"]
        cover.append(claim_left(hook_id))
        time.sleep(1.0)
        cover.append(claim_left(hook_id))
        return Reply(200)

    box.append(receiver(script))
    ids = [_enqueue(hooks, box[0].url, job=f"j{i}")["id"] for i in range(16)]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(
            hooks.store.get(i)["status"] == "delivered" for i in ids):
        hooks.run_due()
    assert len(cover) == 32 and all(c > 0 for c in cover), sorted(cover)[:4]
    assert all(hooks.store.get(i)["attempt"] == 1 for i in ids)


class LateRecorder(Webhooks):
    """Webhooks whose attempts are recorded 2.5 s after they end — a stalled event loop, a
    queue of threads, a slow Redis: the record lands after the 3 s lease taken at claim."""

    def _finish_all(self, *args, **kwargs):
        time.sleep(2.5)
        return super()._finish_all(*args, **kwargs)


def test_an_attempt_recorded_late_is_never_claimed_and_sent_again(settings, rclient,
                                                                   receiver):
    """Given worker A whose records come 2.5 s after 1 s attempts under a 3 s lease, and
    worker B polling beside it, then B never claims A's deliveries: A keeps its claim
    renewed while its batch runs, so each webhook-id reaches the receiver once (before:
    every one of the 8 twice, B re-claiming each at the lease's end)."""
    import threading

    settings.webhook_timeout_s, settings.webhook_lease_s = 2.0, 3.0
    recv = receiver(lambda n: Reply(200, delay_s=1.0))
    late, other = LateRecorder(rclient, settings), Webhooks(rclient, settings)
    ids = [_enqueue(late, recv.url, job=f"j{i}")["id"] for i in range(8)]
    a = threading.Thread(target=late.run_due)
    a.start()
    wait_until(lambda: late.store.due_now(late.now_ms())[0] == 0, 5, "A claimed them")
    deadline = time.monotonic() + 8
    while a.is_alive() and time.monotonic() < deadline:
        other.run_due()
        time.sleep(0.05)
    a.join(10)
    sent = [r.headers["webhook-id"] for r in recv.requests]
    report_duplicates("attempts recorded after the claim's lease", len(set(sent)),
                      len(sent) - len(set(sent)))
    assert sorted(sent) == sorted(ids), f"{len(sent) - len(ids)} duplicate sends"
    assert all(late.store.get(i)["status"] == "delivered" for i in ids)


def test_secret_encryption_uses_a_salted_kdf_and_keys_rotate(settings, rclient):
    import base64
    import hashlib

    from cryptography.fernet import Fernet, InvalidToken

    settings.secret_key = "old passphrase"
    secret = Webhooks(rclient, settings).secrets.current("acme")
    key = settings.keys.webhook_secret("acme")
    token = json.loads(rclient.get(key))["current"].encode()
    unsalted = Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"old passphrase").digest()))
    with pytest.raises(InvalidToken):  # not the old one-hash derivation
        unsalted.decrypt(token)
    assert rclient.get(settings.keys.webhook_kdf_salt())
    # Key rotation: a new key first, the old one after; reading re-encrypts with the new.
    new_key = Fernet.generate_key().decode()
    settings.secret_key = f"{new_key},old passphrase"
    assert Webhooks(rclient, settings).secrets.current("acme") == secret
    settings.secret_key = new_key  # the old key retired
    assert Webhooks(rclient, settings).secrets.current("acme") == secret


def test_account_kdf_salt_is_an_account_like_any_other(settings, rclient):
    """``kdf-salt`` is a valid account id: with a passphrase set it gets, keeps and signs
    with its own secret, and the salt every account's key derives from is untouched."""
    settings.secret_key = "a passphrase"
    hooks = Webhooks(rclient, settings)
    acme = hooks.secrets.current("acme")
    salt = rclient.get(settings.keys.webhook_kdf_salt())
    own = hooks.secrets.current("kdf-salt")
    assert own.startswith("whsec_") and own != acme
    hooks.secrets.rotate("kdf-salt")
    assert len(hooks.secrets.signing_secrets("kdf-salt")) == 2
    assert rclient.get(settings.keys.webhook_kdf_salt()) == salt
    assert Webhooks(rclient, settings).secrets.current("acme") == acme


def test_a_salt_where_earlier_versions_kept_it_is_moved_once(settings, rclient):
    """Secrets sealed under the salt at its old key (``wh:secret:kdf-salt``) still open: the
    salt moves to its own key, and the old key is free for account ``kdf-salt``."""
    import base64
    import os

    from cryptography.fernet import Fernet
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    salt = os.urandom(16)
    rclient.set(settings.keys.webhook_kdf_salt_before(), base64.b64encode(salt))
    key = base64.urlsafe_b64encode(Scrypt(salt=salt, length=32, n=2 ** 14, r=8, p=1)
                                   .derive(b"pass"))
    rclient.set(settings.keys.webhook_secret("acme"), json.dumps(
        {"current": Fernet(key).encrypt(b"whsec_sealed_before").decode(), "previous": None,
         "rotatedAt": None}))
    settings.secret_key = "pass"
    assert Webhooks(rclient, settings).secrets.current("acme") == "whsec_sealed_before"
    assert base64.b64decode(rclient.get(settings.keys.webhook_kdf_salt())) == salt
    assert rclient.get(settings.keys.webhook_kdf_salt_before()) is None
    assert Webhooks(rclient, settings).secrets.current("kdf-salt").startswith("whsec_")
    assert base64.b64decode(rclient.get(settings.keys.webhook_kdf_salt())) == salt


def test_secrets_sealed_by_earlier_versions_still_open(settings, rclient):
    import base64
    import hashlib

    from cryptography.fernet import Fernet

    legacy = Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"pass").digest()))
    rclient.set(settings.keys.webhook_secret("acme"), json.dumps(
        {"current": legacy.encrypt(b"whsec_legacy").decode(), "previous": None,
         "rotatedAt": None}))
    settings.secret_key = "pass"
    assert Webhooks(rclient, settings).secrets.current("acme") == "whsec_legacy"


def test_concurrent_rotations_never_lose_a_secret(settings, rclient, monkeypatch):
    """A rotation that lands between another's read and write: both secrets survive."""
    import webhooks.secrets as secrets_mod

    a, b = Webhooks(rclient, settings).secrets, Webhooks(rclient, settings).secrets
    a.current("acme")
    real, injected = secrets_mod.new_secret, []

    def racing_new_secret() -> str:
        if not injected:  # the first time: another process rotates right now
            injected.append(None)
            monkeypatch.setattr(secrets_mod, "new_secret", real)
            injected[0] = b.rotate("acme")
            monkeypatch.setattr(secrets_mod, "new_secret", racing_new_secret)
        return real()

    monkeypatch.setattr(secrets_mod, "new_secret", racing_new_secret)
    mine = a.rotate("acme", now=time.time())
    assert a.signing_secrets("acme") == [mine, injected[0]]  # the other's not lost


@pytest.mark.parametrize("lease, timeout, message", [
    ("2", "1", "webhook_lease_s"),  # under 3 s: a short stall would let a claim lapse
    ("3", "3", "webhook_lease_s must be longer than webhook_timeout_s"),
])
def test_settings_refuse_a_lease_that_could_send_twice(monkeypatch, lease, timeout, message):
    from pydantic import ValidationError

    from worker.core.settings import Settings

    monkeypatch.setenv("EXTWORKER_WEBHOOK_LEASE_S", lease)
    monkeypatch.setenv("EXTWORKER_WEBHOOK_TIMEOUT_S", timeout)
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_a_quiet_account_finds_its_own_deliveries_under_a_busy_one(settings, rclient):
    """Each account has a log of its own: the newest 10,000 deliveries of every account
    together no longer hide a quiet account's few."""
    from webhooks.store import DeliveryStore

    store = DeliveryStore(rclient, settings.keys, log_max=1000)
    docs = [{"id": f"q{i}", "accountId": "quiet", "createdAt": i, "fileId": "f", "jobId": "j",
             "status": "delivered"} for i in range(3)]
    docs += [{"id": f"b{i}", "accountId": "busy", "createdAt": 10 + i, "fileId": "f",
              "jobId": "j", "status": "delivered"} for i in range(600)]
    for doc in docs:
        assert store.create(doc, 10 ** 12)
        rclient.zrem(store.due, doc["id"])
    # What the console read before: the newest 500 of everyone's, then its own — none.
    assert [d for d in store.list(limit=500) if d["accountId"] == "quiet"] == []
    assert [d["id"] for d in store.list(account="quiet", limit=10,
                                        max_scanned=200)] == ["q2", "q1", "q0"]
    assert len(store.list(account="busy", limit=1000)) == 600
    assert store.list(account="nobody") == []
    rclient.delete(store.doc_key("q1"))  # expired: forgotten by its account's log too
    assert [d["id"] for d in store.list(account="quiet")] == ["q2", "q0"]
    assert rclient.zcard(settings.keys.webhook_account_index("quiet")) == 2
