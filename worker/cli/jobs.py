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
    return int(dramatiq_main(make_argument_parser().parse_args(argv)) or 0)


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
        emit(rec.file_object())
        return 0
    if args.files_cmd == "list":
        emit([r.file_object() for r in pipeline.files.list(
            acct, path=args.path or "", tag=args.tag, skip=args.skip, limit=args.limit)])
        return 0
    rec = pipeline.get_file(args.file_id, acct)
    if rec is None:
        raise ExtworkerError(f"file not found: {args.file_id}")
    if args.files_cmd == "versions":
        emit([{**v.model_dump(mode="json", exclude={"blobKey", "origin"}),
               "url": runtime.blobs.url(v.blobKey),
               "current": v.id == rec.versionInfo.id} for v in rec.versions])
    elif args.files_cmd == "metadata":
        emit(pipeline.files.metadata(rec, args.version))
    else:
        emit(rec.file_object())
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


def cmd_apply(args: argparse.Namespace, settings: Settings) -> int:
    """The whole pipeline in-process, on the embedded stores: no Redis, no broker."""
    from worker.runtime import Runtime

    queued: list[tuple[str, str]] = []
    runtime = Runtime(settings, embedded=True, enqueue=lambda q, j, s: queued.append((j, s)))
    p = runtime.pipeline
    image = Path(args.image)
    record = p.add_file(image.read_bytes(), image.name, account=args.account)
    job = {"fileId": record.fileId, "extensions": args.extensions, "accountId": args.account}
    doc = p.accept(job)
    if doc is None:
        raise ExtworkerError("invalid job")
    for job_id, slot in queued:
        p.execute(job_id, slot)
    final = p.get_file(record.fileId)
    assert final is not None
    out_path = Path(args.output) if args.output else image.with_name(image.stem + ".out.png")
    if final.versionInfo.id != record.versionInfo.id:
        out_path.write_bytes(runtime.blobs.get(final.current.blobKey))
    doc = p.get_job(doc.jobId) or doc
    emit(final.file_object())
    failed = {n: s.error for n, s in doc.extensions.items() if s.status == "failed"}
    for name, err in failed.items():
        print(f"extworker: {name} failed: {err.message if err else ''}", file=sys.stderr)
    if final.versionInfo.id != record.versionInfo.id:
        print(f"extworker: wrote {out_path}", file=sys.stderr)
    return 1 if failed else 0


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    """Report stuck work; with ``--fix``, re-send it (every step is idempotent)."""
    import redis

    from worker.broker import doctor
    from worker.broker.actors import build_broker
    from worker.broker.outbox import Outbox

    client = redis.Redis.from_url(settings.redis_url)
    report = doctor.examine(client, settings)
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
            dispatch=outbox.dispatch, handoff=handoff)
    emit(report)
    return 1 if any(report["counts"].values()) and not args.fix else 0


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
    fl.add_argument("--path", help="a path prefix, e.g. /products/")
    fl.add_argument("--tag")
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

    apl = sub.add_parser("apply", help="run extensions on a local image, no Redis")
    apl.add_argument("image")
    apl.add_argument("--extensions", required=True, type=json_arg)
    apl.add_argument("--account", default="default")
    apl.add_argument("-o", "--output")
    apl.set_defaults(fn=cmd_apply)
