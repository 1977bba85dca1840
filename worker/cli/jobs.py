"""Commands for files, jobs and the worker itself: ``serve``, ``files``, ``submit``,
``jobs``, ``usage``, ``models``, ``apply`` and ``schema``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from worker.cli.common import emit, json_arg
from worker.core.errors import ExtworkerError
from worker.core.settings import Settings
from worker.models import catalog as model_registry


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """The dramatiq worker: ``--processes`` × ``--threads``, plus the pod's HTTP port.

    Prepares what every process must share before dramatiq forks them: a fresh
    prometheus multiprocess directory and this pod's queue list (for /readyz).
    """
    import os
    import re
    import tempfile

    from dramatiq.cli import main as dramatiq_main
    from dramatiq.cli import make_argument_parser

    from worker.telemetry.ops import QUEUES_ENV

    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if metrics_dir:
        # The operator's directory: remove only prometheus_client's sample files (stale
        # ones of a previous run), never anything else that lives there.
        os.makedirs(metrics_dir, exist_ok=True)
        for stale in Path(metrics_dir).glob("*.db"):
            if re.fullmatch(r"(counter|gauge_\w+|histogram|summary)_\d+\.db", stale.name):
                stale.unlink(missing_ok=True)
    else:
        metrics_dir = tempfile.mkdtemp(prefix="extworker-metrics-")  # ours, and empty
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    if args.queues:
        os.environ[QUEUES_ENV] = ",".join(args.queues)
    # The worker processes read their own settings: tell them how many they are, so
    # each takes its share of the CPUs for inference (devices.inference_threads).
    processes = args.processes or settings.processes
    os.environ["EXTWORKER_PROCESSES"] = str(processes)
    argv = ["worker.app", "--processes", str(processes),
            "--threads", str(args.threads or settings.threads),
            "--worker-shutdown-timeout", str(int(settings.shutdown_timeout_s * 1000))]
    if args.queues:
        argv += ["--queues", *args.queues]
    inference: list[Any] = []
    try:
        if shared_models(settings):
            import secrets

            from worker.runtime import InferenceProcess, inference_devices, inference_env

            # One copy of each model per GPU: an inference process per device, started
            # before the workers (forked next), which reach them through the environment.
            key = secrets.token_bytes(32)
            for device in inference_devices(settings):
                inference.append(InferenceProcess(
                    settings.model_copy(update={"device": device}), key))
            os.environ.update(inference_env(inference))
        return int(dramatiq_main(make_argument_parser().parse_args(argv)) or 0)
    finally:
        for process in inference:
            process.stop()


def shared_models(settings: Settings) -> bool:
    """Does ``serve`` run an inference process? ``on``/``off``; ``auto``: when inference is
    not pinned to the CPU and an NVIDIA device is visible (checked without initialising
    CUDA in this process, which forks the workers)."""
    import os

    from worker.models.devices import visible_gpu_count

    if settings.shared_models != "auto":
        return settings.shared_models == "on"
    return (settings.device != "cpu" and visible_gpu_count() > 0
            and os.path.exists("/dev/nvidia0"))


def _bool(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


_UPLOAD_FLAGS = ("useUniqueFileName", "isPrivateFile", "isPublished", "overwriteFile",
                 "overwriteAITags", "overwriteTags", "overwriteCustomMetadata")


def cmd_files(args: argparse.Namespace, settings: Settings) -> int:
    from worker.runtime import Runtime

    runtime = Runtime(settings)
    pipeline = runtime.pipeline
    acct = args.account
    if args.files_cmd == "add":
        path = Path(args.path)
        fields: dict[str, Any] = {k: getattr(args, k) for k in (
            *_UPLOAD_FLAGS, "customCoordinates", "customMetadata", "description")
            if getattr(args, k) is not None}
        rec = pipeline.add_file(path.read_bytes(), args.name or path.name, args.folder,
                                args.tags, account=acct, **fields)
        emit(rec.file_object(settings.urls))
        return 0
    if args.files_cmd == "list":
        from worker.services.files import FileService

        emit(FileService(runtime).listing(acct, path=args.path or "", tags=args.tag,
                                          query=args.query, sort=args.sort, skip=args.skip,
                                          limit=args.limit))
        return 0
    rec = pipeline.get_file(args.file_id, acct)
    if rec is None:
        raise ExtworkerError(f"file not found: {args.file_id}")
    if args.files_cmd == "versions":
        emit([rec.version_object(v.id, settings.urls) for v in rec.versions])
    elif args.files_cmd == "metadata":
        emit(pipeline.files.metadata(rec, args.version))
    else:
        emit(rec.file_object(settings.urls))
    return 0


def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    from worker.broker.client import submit

    job: dict[str, Any] = {"fileId": args.file_id, "extensions": args.extensions,
                           "accountId": args.account}
    if args.webhook_url:
        job["webhookUrl"] = args.webhook_url
    if args.job_id:
        job["jobId"] = args.job_id
    if args.dry_run:
        job["dryRun"] = True
    if args.remove_ai_tags:
        job["removeAITags"] = args.remove_ai_tags
    result = submit(job, settings=settings, wait=args.wait)
    if args.wait is None:
        result = {"jobId": result["jobId"], "published": True}
    emit(result)
    return 0


def cmd_jobs(args: argparse.Namespace, settings: Settings) -> int:
    from worker.runtime import Runtime

    doc = Runtime(settings).pipeline.get_job(args.job_id)
    if doc is None:
        raise ExtworkerError(f"job not found: {args.job_id}")
    emit(doc.to_json())
    return 0


def cmd_usage(args: argparse.Namespace, settings: Settings) -> int:
    from worker.runtime import Runtime

    usage = Runtime(settings).pipeline.usage(args.account, args.month)
    usage["quota"] = settings.quota_for(args.account)
    emit(usage)
    return 0


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    if args.models_cmd == "pull":
        path = model_registry.pull(args.name, settings.models_dir,
                                   log=lambda m: print(m, file=sys.stderr),
                                   revision=args.revision)
        out: dict[str, Any] = {"name": args.name, "path": str(path)}
        if path.is_file():
            algorithm = model_registry.spec(args.name).algorithm
            out[algorithm] = model_registry.digest_of(path, algorithm)
        emit(out)
        return 0
    loaded: dict[str, int] = {}
    try:
        import redis

        from worker.broker.modelkeeper import loaded_anywhere

        loaded = loaded_anywhere(redis.Redis.from_url(settings.redis_url,
                                                      socket_connect_timeout=1), settings)
    except Exception:  # no Redis: list what is on disk
        pass
    rows = model_registry.installed(settings.models_dir, frozenset(loaded))
    for row in rows:
        row["loadedBy"] = loaded.get(row["name"], 0)
    emit(rows)
    return 0


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif",
                  ".heic")


def _inputs(patterns: list[str]) -> list[tuple[Path, Path]]:
    """(file, its path relative to what named it) for every image a directory or glob names."""
    import glob
    import re

    found: dict[Path, Path] = {}
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            files = [(f, f.relative_to(path)) for f in sorted(path.rglob("*"))
                     if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
        elif path.is_file():
            files = [(path, Path(path.name))]
        else:  # a glob: paths relative to its last directory before the first wildcard
            parts = path.parts
            fixed = next((i for i, p in enumerate(parts) if re.search(r"[*?[]", p)),
                         len(parts))
            base = Path(*parts[:fixed]) if fixed else Path()
            files = [(Path(f), Path(f).relative_to(base))
                     for f in sorted(glob.glob(pattern, recursive=True)) if Path(f).is_file()]
        for f, rel in files:
            found.setdefault(f.resolve(), rel)
    return [(f, rel) for f, rel in found.items()]


class _Apply:
    """Runs one file's job on the embedded stores; many threads share one instance."""

    def __init__(self, settings: Settings, extensions: list[Any], account: str) -> None:
        import threading

        from worker.runtime import Runtime

        self._lock = threading.Lock()
        self._queued: dict[str, list[str]] = {}
        self.runtime = Runtime(settings, embedded=True, enqueue=self._enqueue)
        self.extensions, self.account = extensions, account

    def _enqueue(self, _queue: str, job_id: str, slot: str) -> None:
        with self._lock:
            self._queued.setdefault(job_id, []).append(slot)

    def run(self, image: Path) -> tuple[Any, Any, bytes | None]:
        """(file record, job document, new version's bytes or None)."""
        p = self.runtime.pipeline
        record = p.add_file(image.read_bytes(), image.name, account=self.account)
        doc = p.accept({"fileId": record.fileId, "extensions": self.extensions,
                        "accountId": self.account})
        if doc is None:
            raise ExtworkerError("invalid job")
        with self._lock:
            slots = self._queued.pop(doc.jobId, [])
        for slot in slots:
            p.execute(doc.jobId, slot)
        final = p.get_file(record.fileId)
        assert final is not None
        doc = p.get_job(doc.jobId) or doc
        changed = final.versionInfo.id != record.versionInfo.id
        return final, doc, self.runtime.blobs.get(final.current.blobKey) if changed else None


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(data)
    tmp.replace(path)


def cmd_apply(args: argparse.Namespace, settings: Settings) -> int:
    """The whole pipeline in-process, on the embedded stores: no Redis, no broker.

    One image: its file object on stdout, the new version (if any) at ``-o`` (default
    ``<image>.out.png``). Directories or globs (or ``-o`` an existing directory): every image,
    ``--workers`` at a time, each giving ``OUTDIR/<path>.png`` (when an extension made a new
    version) and ``OUTDIR/<path>.json`` (its file object and each extension's outcome),
    written last, so a rerun skips what is finished; a progress bar on stderr; a summary line.
    """
    single = (len(args.inputs) == 1 and Path(args.inputs[0]).is_file()
              and not (args.output and Path(args.output).is_dir()))
    if single:
        return _apply_one(args, settings, Path(args.inputs[0]))
    if not args.output:
        raise ExtworkerError("apply: give -o OUTDIR for a directory or a glob")
    return _apply_many(args, settings, _inputs(args.inputs), Path(args.output))


def _apply_one(args: argparse.Namespace, settings: Settings, image: Path) -> int:
    final, doc, version = _Apply(settings, args.extensions, args.account).run(image)
    out_path = Path(args.output) if args.output else image.with_name(image.stem + ".out.png")
    if version is not None:
        out_path.write_bytes(version)
    emit(final.file_object(settings.urls))
    failed = {n: s.error for n, s in doc.extensions.items() if s.status == "failed"}
    for name, err in failed.items():
        print(f"extworker: {name} failed: {err.message if err else ''}", file=sys.stderr)
    if version is not None:
        print(f"extworker: wrote {out_path}", file=sys.stderr)
    return 1 if failed else 0


def _apply_many(args: argparse.Namespace, settings: Settings, inputs: list[tuple[Path, Path]],
                outdir: Path) -> int:
    import json
    import time
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    if not inputs:
        raise ExtworkerError(f"apply: no images in {' '.join(args.inputs)}")
    todo = [(f, rel) for f, rel in inputs
            if not (outdir / rel).with_suffix(rel.suffix + ".json").exists()]
    skipped = len(inputs) - len(todo)
    workers = args.workers or max(2, settings.threads)
    runner = _Apply(settings, args.extensions, args.account)
    failures: list[str] = []

    def one(item: tuple[Path, Path]) -> None:
        image, rel = item
        target = outdir / rel
        try:
            final, doc, version = runner.run(image)
        except Exception as e:  # one unreadable file never stops the batch
            failures.append(f"{image}: {e}")
            return
        if version is not None:
            _write(target.with_suffix(rel.suffix + ".png"), version)
        outcome = {n: {"status": s.status, **({"error": s.error.message} if s.error else {})}
                   for n, s in doc.extensions.items()}
        bad = [f"{n}: {o.get('error', '')}" for n, o in outcome.items() if o["status"] != "success"]
        if bad:
            failures.append(f"{image}: " + "; ".join(bad))
            return  # no .json: a rerun tries it again
        _write(target.with_suffix(rel.suffix + ".json"), json.dumps(
            {"source": str(image), "file": final.file_object(settings.urls), "extensions": outcome},
            indent=2, default=str).encode())

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool, tqdm(
            total=len(todo), unit="img", desc="apply", file=sys.stderr,
            disable=args.quiet) as bar:
        for _ in pool.map(one, todo):
            bar.update()
    elapsed = time.perf_counter() - t0
    for line in failures:
        print(f"extworker: failed: {line}", file=sys.stderr)
    done = len(todo) - len(failures)
    print(f"apply: {done} done, {skipped} skipped (already done), {len(failures)} failed, "
          f"in {elapsed:.1f} s ({done / elapsed if elapsed else 0:.2f} images/s) -> {outdir}",
          file=sys.stderr)
    return 1 if failures else 0


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    """Report stuck work; with ``--fix``, re-send it (every step is idempotent)."""
    import redis

    from worker.broker import doctor
    from worker.broker.actors import build_broker
    from worker.broker.outbox import Outbox
    from worker.store.backends import open_store
    from worker.store.blobs import BlobStore

    client = redis.Redis.from_url(settings.redis_url)
    blobs = BlobStore(settings.blob_root, settings.public_url_base)
    report = doctor.examine(client, settings, blobs=blobs, store=open_store(settings, client))
    if args.fix:
        from webhooks.deliverer import Webhooks
        from worker.runtime import Runtime

        outbox = Outbox(build_broker(settings), settings)
        pipeline = Runtime(settings, notify=Webhooks(client, settings).hand_off).pipeline

        def handoff(job_id: str, slot: str) -> None:
            job = pipeline.get_job(job_id)
            if job is not None:
                pipeline.executor.hand_off(job, slot)

        report["fixed"] = doctor.repair(
            client, settings, report, send=outbox.execute, wake_webhooks=outbox.wake_webhooks,
            dispatch=outbox.dispatch, handoff=handoff, blobs=blobs)
    emit(report)
    for problem in report["problems"]:
        print(f"extworker doctor: {problem}", file=sys.stderr)
    return 1 if (any(report["counts"].values()) or report["problems"]) and not args.fix else 0


def cmd_schema(args: argparse.Namespace, settings: Settings) -> int:
    from extensions.registry import Registry

    # The installed extensions' contract: built-ins and plug-ins alike.
    emit(Registry.discover(settings.extra_extensions).contract.json_schema())
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register these commands on ``extworker``'s subparsers."""
    sp = sub.add_parser("serve", help="run the dramatiq worker")
    sp.add_argument("--queues", nargs="+")
    sp.add_argument("--processes", type=int)
    sp.add_argument("--threads", type=int)
    sp.set_defaults(fn=cmd_serve)

    fp = sub.add_parser("files", help="upload, list and inspect files (per account)")
    fsub = fp.add_subparsers(dest="files_cmd", required=True)
    fa = fsub.add_parser("add", help="upload a local file (the upload API's fields)")
    fa.add_argument("path")
    fa.add_argument("--name", help="fileName (default: the file's own name)")
    fa.add_argument("--folder", default="/")
    fa.add_argument("--tags", help="comma-separated")
    for flag in _UPLOAD_FLAGS:
        fa.add_argument(f"--{flag}", type=_bool, metavar="true|false")
    fa.add_argument("--customCoordinates", metavar="x,y,width,height")
    fa.add_argument("--customMetadata", type=json_arg, metavar="JSON")
    fa.add_argument("--description")
    fl = fsub.add_parser("list", help="the account's files in path order")
    fl.add_argument("--path", help="a folder (and its subfolders), e.g. /products/")
    fl.add_argument("--tag")
    fl.add_argument("--query", help='a searchQuery, e.g. \'tags IN ["sale"] AND createdAt > "7d"\'')
    fl.add_argument("--sort", help="ASC_/DESC_ with NAME, CREATED, UPDATED, SIZE, WIDTH, HEIGHT")
    fl.add_argument("--skip", type=int, default=0)
    fl.add_argument("--limit", type=int, default=100)
    for name in ("get", "versions", "metadata"):
        fg = fsub.add_parser(name)
        fg.add_argument("file_id")
    fsub.choices["metadata"].add_argument("--version", help="a version id (default: current)")
    for p in fsub.choices.values():
        p.add_argument("--account", default="default")
    fp.set_defaults(fn=cmd_files)

    su = sub.add_parser("submit", help="publish a job")
    su.add_argument("--file-id", required=True)
    su.add_argument("--extensions", required=True, type=json_arg, help="JSON array or @file")
    su.add_argument("--webhook-url")
    su.add_argument("--account", default="default")
    su.add_argument("--job-id")
    su.add_argument("--dry-run", action="store_true", help="charge no units")
    su.add_argument("--remove-ai-tags", type=json_arg, help='JSON: ["name", …] or "all"')
    su.add_argument("--wait", type=float, metavar="SECONDS")
    su.set_defaults(fn=cmd_submit)

    jp = sub.add_parser("jobs", help="inspect a job")
    jsub = jp.add_subparsers(dest="jobs_cmd", required=True)
    jg = jsub.add_parser("get")
    jg.add_argument("job_id")
    jp.set_defaults(fn=cmd_jobs)

    up = sub.add_parser("usage", help="units used this month")
    up.add_argument("account")
    up.add_argument("--month", help="YYYY-MM (default: this month)")
    up.set_defaults(fn=cmd_usage)

    mp = sub.add_parser("models", help="pull and list models")
    msub = mp.add_subparsers(dest="models_cmd", required=True)
    mpull = msub.add_parser("pull")
    mpull.add_argument("name")
    mpull.add_argument("--revision", help="hub models: a branch, tag or commit (default main)")
    msub.add_parser("list")
    mp.set_defaults(fn=cmd_models)

    dr = sub.add_parser("doctor", help="report stuck work (exit 1 when any); --fix repairs it")
    dr.add_argument("--fix", action="store_true")
    dr.set_defaults(fn=cmd_doctor)

    sc = sub.add_parser("schema", help="print the job JSON Schema")
    sc.set_defaults(fn=cmd_schema)

    apl = sub.add_parser("apply", help="run extensions on local images (a file, directories "
                         "or globs), no Redis")
    apl.add_argument("inputs", nargs="+", metavar="IMAGE|DIR|GLOB")
    apl.add_argument("--extensions", required=True, type=json_arg)
    apl.add_argument("--account", default="default")
    apl.add_argument("-o", "--output", help="one image: the output file; many: OUTDIR")
    apl.add_argument("--workers", type=int, default=0,
                     help="images at once (default: max(2, EXTWORKER_THREADS))")
    apl.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    apl.set_defaults(fn=cmd_apply)
