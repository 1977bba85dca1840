"""Soak: a real ``extworker api`` + ``serve`` for N minutes, with a worker kill -9 and a
Redis restart in the middle — and proof that nothing grows and nothing is lost.

Load: uploads through the API (a 256-px photo, remove-bg and google-auto-tagging, a
webhook URL) at ``--rate`` per second from two clients; once the library holds ``--keep``
files, each upload also deletes the oldest file (a steady-state library). Webhooks go to a
flaky local receiver (10 % answer 500, 5 % take 1.5 s). Redis is a private ``redis-server``
(AOF, fsync always) on a port of its own; the document store is a PostgreSQL database made
for the run and dropped after (``--store redis`` keeps it in that Redis).

Faults: at 40 % of the run the worker's process group gets SIGKILL and a new ``serve``
starts; at 60 % Redis is killed and restarted on the same data after 2 s.

Every ``--window`` seconds (default 120) one row: jobs finished per second, p50/p99 of
upload → last extension final, RSS (MiB) of the API, of ``serve`` (all its processes) and of
Redis, Redis ``used_memory``, the PostgreSQL tables' size, open file descriptors, file
records vs blobs. At the end, once the work is drained:

* every job final; units charged = successful extensions × their unit cost;
* every webhook delivery final: delivered (a 2xx seen by the receiver) or exhausted;
  duplicates (a second 2xx for one webhook-id) counted;
* no blob without a record and no record without its blob (after the deletes);
* memory flat after warm-up: the growth per window of the API's, serve's and Redis's RSS
  and of Redis's used_memory (least squares, from each process's last start on, its first
  window left out), under 2 % — judged when at least 4 windows count.

Exit status 1 when a check fails.

    python benchmarks/soak.py [--minutes 20] [--window 120] [--rate 1] [--keep 60]
        [--store pg|redis] [--pg postgresql://127.0.0.1:5432/postgres] [--models-dir DIR]
"""

from __future__ import annotations

import os
import sys

if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)  # benchmarks/webhooks.py would shadow the `webhooks` package
import argparse
import json
import random
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.node import free_port, pct, session_rss  # noqa: E402
from tests.support.receiver import Receiver, Reply  # noqa: E402
from webhooks.events import webhook_id  # noqa: E402
from webhooks.store import DeliveryStore  # noqa: E402
from worker.broker.doctor import OWNED_BLOBS  # noqa: E402
from worker.core.settings import Settings  # noqa: E402
from worker.models.catalog import pull  # noqa: E402
from worker.runtime import Runtime  # noqa: E402

ACCOUNT = "soak"
EXTENSIONS = [{"name": "remove-bg"}, {"name": "google-auto-tagging", "minConfidence": 0,
                                      "maxTags": 3}]


class PrivateRedis:
    """A redis-server of the soak's own (AOF fsynced on every write), killed and restarted."""

    def __init__(self, workdir: Path) -> None:
        self.dir, self.port = workdir, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port),
             "--bind", "127.0.0.1", "--dir", str(self.dir), "--appendonly", "yes",
             "--appendfsync", "always", "--save", ""], stdout=subprocess.DEVNULL)
        for _ in range(500):
            try:
                redis.Redis.from_url(self.url).ping()
                return
            except redis.RedisError:
                time.sleep(0.02)
        raise SystemExit("redis-server did not start")

    def kill_and_restart(self, down_s: float) -> None:
        self.proc.kill()
        self.proc.wait(10)
        time.sleep(down_s)
        self.start()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def pg_database(base: str) -> tuple[str, object] | None:
    """A new database on ``base``'s server: (its URL, a function that drops it); None when
    no PostgreSQL answers."""
    try:
        import psycopg
        conn = psycopg.connect(base, autocommit=True, connect_timeout=3)
    except Exception as e:  # noqa: BLE001 - reported, then the run uses Redis
        print(f"(no PostgreSQL at {base}: {e}; the store stays in Redis)")
        return None
    name = f"extworker_soak_{uuid.uuid4().hex[:8]}"
    conn.execute(f'CREATE DATABASE "{name}"')
    url = base.rsplit("/", 1)[0] + "/" + name

    def drop() -> None:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()

    return url, drop


def pg_size(url: str) -> int:
    import psycopg
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM "
                           "pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                           "WHERE c.relkind = 'r' AND n.nspname = 'public'").fetchone()
    return int(row[0]) if row else 0


def fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def session_fds(sid: int) -> int:
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[3]) == sid:
                total += fds(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return total


def rss_of(pid: int) -> float:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf(
            "SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


def growth(series: list[float]) -> float | None:
    """Least-squares slope per window, as a share of the mean (None: too few points)."""
    if len(series) < 3 or not statistics.mean(series):
        return None
    xs = range(len(series))
    slope = statistics.linear_regression(list(xs), series).slope
    return slope / statistics.mean(series)


def stamp(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="extworker-soak-"))
        self.procs: list[subprocess.Popen[bytes]] = []  # everything started, stopped at close
        self.log_from: dict[str, int] = {}
        (self.tmp / "redis").mkdir()
        self.redis = PrivateRedis(self.tmp / "redis")
        self.pg = pg_database(args.pg) if args.store == "pg" else None
        models_dir = Path(args.models_dir)
        pull("u2netp", models_dir)
        from tests.support.tiny_models import build

        classifier = build(models_dir)["classifier"]
        self.settings = Settings(redis_url=self.redis.url, data_dir=self.tmp / "data",
                                 models_dir=models_dir, classifier_model=classifier,
                                 store_url=self.pg[0] if self.pg else None,
                                 egress_allowlist="127.0.0.1/32,::1/128")
        self.api_port = free_port()
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1",
                    "EXTWORKER_REDIS_URL": self.redis.url,
                    "EXTWORKER_DATA_DIR": str(self.settings.data_dir),
                    "EXTWORKER_MODELS_DIR": str(models_dir),
                    "EXTWORKER_CLASSIFIER_MODEL": classifier,
                    "EXTWORKER_TAGGER_GOOGLE": "classifier",
                    "EXTWORKER_EGRESS_ALLOWLIST": "127.0.0.1/32,::1/128",
                    "EXTWORKER_API_URL": f"http://127.0.0.1:{self.api_port}",
                    "EXTWORKER_PRELOAD": json.dumps(["remove-bg:u2netp",
                                                     f"classifier:{classifier}"]),
                    "EXTWORKER_WEBHOOK_TIMEOUT_S": "5", "EXTWORKER_WEBHOOK_LEASE_S": "20",
                    "EXTWORKER_WEBHOOK_DELAYS_S": "[0, 1, 2, 4, 8, 8]",
                    "EXTWORKER_WEBHOOK_LOG_MAX": str(args.log_max),
                    "EXTWORKER_BROKER_HEARTBEAT_TIMEOUT_S": "10",
                    "EXTWORKER_BROKER_SWEEP_S": "2"}
        if self.pg:
            self.env["EXTWORKER_STORE_URL"] = self.pg[0]
        self.runtime = Runtime(self.settings)  # the soak's own reader of the store
        self.acked: Counter[str] = Counter()  # 2xx answers per webhook-id
        self.receiver = Receiver(self._reply)
        self.rng = random.Random(11)
        self.lock = threading.Lock()
        self.uploaded: dict[str, float] = {}  # fileId → when its upload started
        self.answered: dict[str, dict[str, str]] = {}  # fileId → extensionStatus answered
        self.kept: list[str] = []  # live files, oldest first
        self.latencies: list[tuple[float, float]] = []  # (finished at, seconds)
        self.final: set[str] = set()
        self.errors: Counter[str] = Counter()
        self.api = self._start(["api", "--port", str(self.api_port)], "api")
        self.serve = self._start(["serve", "--processes", "1", "--threads", "2"], "serve")
        self.restarts = {"serve": 0, "redis": 0}

    def _reply(self, n: int) -> Reply:
        roll = self.rng.random()
        if roll < 0.10:
            return Reply(500)
        self.acked[self.receiver.requests[n].headers["webhook-id"]] += 1
        return Reply(200, delay_s=1.5 if roll < 0.15 else 0.0)

    def _start(self, argv: list[str], name: str) -> subprocess.Popen[bytes]:
        path = self.tmp / f"{name}.log"
        self.log_from[name] = path.stat().st_size if path.exists() else 0  # this start's part
        log = open(path, "a")
        proc = subprocess.Popen([sys.executable, "-m", "worker.cli", *argv], env=self.env,
                                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                start_new_session=True)
        self.procs.append(proc)
        deadline = time.monotonic() + 120
        while not self._ready(name):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name} did not start:\n"
                                 + (self.tmp / f"{name}.log").read_text()[-3000:])
            time.sleep(0.1)
        return proc

    def _ready(self, name: str) -> bool:
        if name == "serve":
            with open(self.tmp / "serve.log") as fh:
                fh.seek(self.log_from[name])
                return "ready for action" in fh.read()
        try:
            return httpx.get(f"http://127.0.0.1:{self.api_port}/openapi.json",
                             timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    # --- load ---------------------------------------------------------------------------

    def client_loop(self, key: str, photo: bytes, until: float) -> None:
        http = httpx.Client(base_url=f"http://127.0.0.1:{self.api_port}", auth=(key, ""),
                            timeout=60)
        pace = 2 / self.args.rate  # two clients
        next_at = time.monotonic()
        while time.monotonic() < until:
            next_at += pace
            t0 = time.time()
            try:
                r = http.post("/api/v1/files/upload", data={
                    "fileName": "p.jpg", "folder": "/soak", "webhookUrl": self.receiver.url,
                    "extensions": json.dumps(EXTENSIONS)}, files={"file": ("p.jpg", photo)})
                r.raise_for_status()
                fid = r.json()["fileId"]
                with self.lock:
                    self.uploaded[fid] = t0
                    # The synchronous attempt: auto-tagging answered here gets no webhook.
                    self.answered[fid] = r.json().get("extensionStatus") or {}
                    self.kept.append(fid)
                    gone = self.kept.pop(0) if len(self.kept) > self.args.keep else None
                if gone:
                    http.delete(f"/v1/files/{gone}").raise_for_status()
            except httpx.HTTPError as e:  # Redis restarting: counted, not fatal
                self.errors[f"{type(e).__name__}"] += 1
            time.sleep(max(0.0, next_at - time.monotonic()))

    def collect(self) -> int:
        """Jobs that became final since the last call (their latencies recorded)."""
        with self.lock:
            waiting = [f for f in self.uploaded if f not in self.final]
        done = 0
        for fid in waiting:
            jobs = self.runtime.pipeline.jobs(ACCOUNT, count=1, file_id=fid)
            if jobs and jobs[0].finished:
                last = max(stamp(s.finishedAt) for s in jobs[0].extensions.values()
                           if s.finishedAt)
                self.latencies.append((last, last - self.uploaded[fid]))
                self.final.add(fid)
                done += 1
        return done

    # --- samples ------------------------------------------------------------------------

    def sample(self) -> dict[str, float]:
        info = redis.Redis.from_url(self.redis.url).info("memory")
        files = self.runtime.library.paths_under(ACCOUNT, "/")
        blobs = sum(1 for k, _ in self.runtime.blobs.keys() if OWNED_BLOBS.match(k))
        return {
            "api": rss_of(self.api.pid),
            "serve": sum(m for _, m in session_rss(self.serve.pid)),
            "redis": rss_of(self.redis.proc.pid),
            "used_memory": info["used_memory"] / 2**20,
            "pg": pg_size(self.pg[0]) / 2**20 if self.pg else 0.0,
            "fds": fds(self.api.pid) + session_fds(self.serve.pid) + fds(self.redis.proc.pid),
            "records": len(files), "blobs": blobs,
        }

    def run(self) -> int:
        args = self.args
        key = self.runtime.apikeys.create(ACCOUNT)["key"]
        from benchmarks.remove_bg import photo

        img = photo("astronaut", (256, 256))
        start = time.monotonic()
        until = start + args.minutes * 60
        clients = [threading.Thread(target=self.client_loop, args=(key, img, until))
                   for _ in range(2)]
        for t in clients:
            t.start()
        faults = [(0.4, "kill -9 serve", self.kill_serve),
                  (0.6, "Redis killed, back in 2 s", self.restart_redis)]
        rows: list[dict[str, float]] = []
        print(f"soak: {args.minutes} min, windows of {args.window} s, {args.rate} uploads/s "
              f"(remove-bg + google-auto-tagging, webhooks to a flaky receiver), library "
              f"kept at {args.keep} files, store on {'PostgreSQL' if self.pg else 'Redis'}")
        print(f"{'t (s)':>6} {'jobs/s':>7} {'p50 s':>6} {'p99 s':>6} {'api MiB':>8} "
              f"{'serve MiB':>10} {'redis MiB':>10} {'used MiB':>9} {'pg MiB':>7} {'fds':>5} "
              f"{'records':>8} {'blobs':>6}  event")
        window_end = start + args.window
        events: list[str] = []
        while time.monotonic() < until + 0.5:
            for share, what, act in list(faults):
                if time.monotonic() >= start + share * args.minutes * 60:
                    act()
                    events.append(what)
                    faults.remove((share, what, act))
            self._safe(self.collect)
            if time.monotonic() >= window_end:
                now = time.time()
                recent = [s for t, s in self.latencies if t >= now - args.window]
                row = self._safe(self.sample) or (rows[-1] if rows else {})
                row = {**row, "jobs_s": len(recent) / args.window,
                       "restarts_serve": self.restarts["serve"],
                       "restarts_redis": self.restarts["redis"]}
                rows.append(row)
                print(f"{int(time.monotonic() - start):6d} {row['jobs_s']:7.2f} "
                      f"{pct(recent, 50) if recent else 0:6.2f} "
                      f"{pct(recent, 99) if recent else 0:6.2f} {row.get('api', 0):8.0f} "
                      f"{row.get('serve', 0):10.0f} {row.get('redis', 0):10.1f} "
                      f"{row.get('used_memory', 0):9.2f} {row.get('pg', 0):7.1f} "
                      f"{row.get('fds', 0):5.0f} {row.get('records', 0):8.0f} "
                      f"{row.get('blobs', 0):6.0f}  {', '.join(events)}", flush=True)
                events = []
                window_end += args.window
            time.sleep(0.5)
        for t in clients:
            t.join(120)
        return self.verdict(rows)

    def kill_serve(self) -> None:
        os.killpg(self.serve.pid, signal.SIGKILL)
        self.serve.wait(10)
        self.serve = self._start(["serve", "--processes", "1", "--threads", "2"], "serve")
        self.restarts["serve"] += 1

    def restart_redis(self) -> None:
        self.redis.kill_and_restart(2)
        self.restarts["redis"] += 1

    def _safe(self, fn):  # noqa: ANN001, ANN202 - a sample during Redis's restart may fail
        try:
            return fn()
        except (redis.RedisError, OSError) as e:
            self.errors[f"sample: {type(e).__name__}"] += 1
            return None

    # --- the end ------------------------------------------------------------------------

    def verdict(self, rows: list[dict[str, float]]) -> int:
        failures: list[str] = []
        deadline = time.monotonic() + 300
        while self._safe(self.collect) is not None and len(self.final) < len(self.uploaded):
            if time.monotonic() > deadline:
                failures.append(f"{len(self.uploaded) - len(self.final)} jobs not final")
                break
            time.sleep(1)
        store = DeliveryStore(redis.Redis.from_url(self.redis.url), self.settings.keys)
        jobs = []
        offset = 0
        while batch := self.runtime.pipeline.jobs(ACCOUNT, offset=offset, count=500):
            jobs += batch
            offset += 500
        slots = [(j, n, s) for j in jobs for n, s in j.extensions.items()]
        ids = [webhook_id(j.jobId, n) for j, n, _ in slots]
        # The delivery log keeps the newest --log-max; only final ones are ever trimmed, so a
        # delivery without a document ended — and must have reached the receiver.
        while time.monotonic() < deadline:
            if all(d is None or d["status"] != "pending" for d in store.get_many(ids)):
                break
            time.sleep(1)
        docs = store.get_many(ids)
        time.sleep(2)  # a slow answer in flight is counted too
        acked = self.acked
        statuses = Counter(d["status"] if d else "final, trimmed from the log" for d in docs)
        # A delivery `suppressed` was reported to the uploader instead (the synchronous
        # attempt): the upload's answer must say so, final, for that extension.
        told = {webhook_id(j.jobId, n): self.answered.get(j.fileId or "", {}).get(n)
                for j, n, _ in slots}
        undelivered = [i for i, d in zip(ids, docs, strict=True)
                       if (d is None and not acked[i])
                       or (d is not None and d["status"] == "delivered" and not acked[i])
                       or (d is not None and d["status"] == "suppressed"
                           and told[i] not in ("success", "failed"))
                       or (d is not None and d["status"] not in ("delivered", "exhausted",
                                                                  "suppressed"))]
        duplicates = sum(c - 1 for c in acked.values() if c > 1)
        success = Counter(s.extension for _, _, s in slots if s.status == "success")
        expected = {e: n * self.settings.unit_cost(e) for e, n in success.items()}
        charged = self.runtime.pipeline.usage(ACCOUNT)["extensions"]
        charged = {e: u for e, u in charged.items() if u}
        unfinished = [j.jobId for j in jobs if not j.finished]
        orphans, missing = self.blob_check()
        print(f"\njobs: {len(jobs)} ({len(slots)} extensions: "
              f"{dict(Counter(s.status for _, _, s in slots))}), {len(unfinished)} not final; "
              f"client errors during faults: {dict(self.errors) or 'none'}")
        print(f"units: charged {charged}, successful extensions × unit cost {expected}")
        print(f"webhooks: {len(ids)} deliveries {dict(statuses)}; receiver: "
              f"{len(self.receiver.requests)} POSTs, {len(acked)} webhook-ids answered 2xx, "
              f"{duplicates} duplicate 2xx; undelivered {len(undelivered)}")
        print(f"blobs: {len(orphans)} without a record, {len(missing)} records without their "
              f"blob")
        if unfinished:
            failures.append(f"jobs not final: {unfinished[:5]}")
        if charged != expected:
            failures.append("units differ from the successful extensions")
        if undelivered:
            failures.append(f"webhooks not delivered: {undelivered[:5]}")
        if orphans or missing:
            failures.append(f"blobs: orphans {orphans[:3]}, missing {missing[:3]}")
        failures += self.flatness(rows)
        for f in failures:
            print(f"FAILED: {f}")
        print("soak: OK" if not failures else "soak: FAILED")
        return 1 if failures else 0

    def blob_check(self) -> tuple[list[str], list[str]]:
        """Blobs extworker wrote that no record references, and record versions whose blob
        is not there (``derived/<fileId>/<versionId>/…`` belongs to that version)."""
        referenced: set[str] = set()
        versions: set[str] = set()
        for path in self.runtime.library.paths_under(ACCOUNT, "/"):
            record = self.runtime.files.by_path(ACCOUNT, path)
            if record is None:
                continue
            for v in record.versions:
                referenced.add(v.blobKey)
                versions.add(f"derived/{record.fileId}/{v.id}/")
        listed = {k for k, _ in self.runtime.blobs.keys() if OWNED_BLOBS.match(k)}
        orphans = sorted(k for k in listed if k not in referenced and not (
            k.startswith("derived/") and k.rsplit("/", 1)[0] + "/" in versions))
        return orphans, sorted(referenced - listed)

    def flatness(self, rows: list[dict[str, float]]) -> list[str]:
        """Growth per window of each process's RSS and of Redis's used_memory, in each stretch
        between its (re)starts, leaving out each stretch's first window (warm-up); a stretch
        of at least 4 windows is judged."""
        out: list[str] = []
        restarts = {"api": None, "serve": "restarts_serve", "redis": "restarts_redis",
                    "used_memory": "restarts_redis"}
        parts = []
        for name, counter in restarts.items():
            stretches: list[list[float]] = [[]]
            for i, row in enumerate(rows):
                if counter and i and row[counter] != rows[i - 1][counter]:
                    stretches.append([])
                if name in row:
                    stretches[-1].append(row[name])
            shown = []
            for series in (st[1:] for st in stretches):
                g = growth(series)
                shown.append(f"{'-' if g is None else f'{100 * g:+.2f}%'} over {len(series)}")
                if g is not None and len(series) >= 4 and g >= 0.02:
                    out.append(f"{name} grows {100 * g:.2f}% per window")
            parts.append(f"{name} {' then '.join(shown)}")
        print("memory growth per window after warm-up (windows judged when 4 or more): "
              + "; ".join(parts))
        return out

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)
        if hasattr(self, "receiver"):
            self.receiver.close()
        self.redis.stop()
        if self.pg:
            self.pg[1]()  # type: ignore[operator]
        shutil.rmtree(self.tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=20)
    ap.add_argument("--window", type=float, default=120)
    ap.add_argument("--rate", type=float, default=1.0, help="uploads per second")
    ap.add_argument("--keep", type=int, default=60, help="files kept in the library")
    ap.add_argument("--log-max", type=int, default=500,
                    help="EXTWORKER_WEBHOOK_LOG_MAX: deliveries kept (the log's bound)")
    ap.add_argument("--store", choices=["pg", "redis"], default="pg")
    ap.add_argument("--pg", default=os.environ.get(
        "EXTWORKER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--models-dir", default=".data/models")
    soak = Soak.__new__(Soak)
    try:
        soak.__init__(ap.parse_args())  # type: ignore[misc]
        code = soak.run()
    finally:
        if hasattr(soak, "redis"):
            soak.close()
    sys.exit(code)


if __name__ == "__main__":
    main()
