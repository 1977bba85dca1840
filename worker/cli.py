"""``extworker``: every command prints JSON on stdout; errors go to stderr, exit non-zero."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from . import models as model_registry
from .errors import ExtworkerError
from .settings import Settings


def _out(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str, sort_keys=False)
    sys.stdout.write("\n")


def _json_arg(value: str) -> Any:
    """A JSON literal, or ``@path`` to read it from a file."""
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON: {e}") from None


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """The dramatiq worker: ``--processes`` × ``--threads``, plus the pod's HTTP port.

    Prepares what every process must share before dramatiq forks them: a fresh
    prometheus multiprocess directory and this pod's queue list (for /readyz).
    """
    import os
    import shutil
    import tempfile

    from dramatiq.cli import main as dramatiq_main
    from dramatiq.cli import make_argument_parser

    from .ops import QUEUES_ENV

    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(
        prefix="extworker-metrics-")
    shutil.rmtree(metrics_dir, ignore_errors=True)  # stale samples of a previous run
    os.makedirs(metrics_dir, exist_ok=True)
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


def cmd_files(args: argparse.Namespace, settings: Settings) -> int:
    from .runtime import Runtime

    pipeline = Runtime(settings).pipeline
    if args.files_cmd == "add":
        path = Path(args.path)
        tags = [t.strip() for t in args.tags.split(",") if t.strip()] if args.tags else None
        rec = pipeline.add_file(path.read_bytes(), args.name or path.name, args.folder, tags)
        _out(rec.file_object())
        return 0
    rec = pipeline.get_file(args.file_id)
    if rec is None:
        raise ExtworkerError(f"file not found: {args.file_id}")
    _out(rec.file_object())
    return 0


def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    from .client import submit

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
    _out(result)
    return 0


def cmd_jobs(args: argparse.Namespace, settings: Settings) -> int:
    from .runtime import Runtime

    doc = Runtime(settings).pipeline.get_job(args.job_id)
    if doc is None:
        raise ExtworkerError(f"job not found: {args.job_id}")
    _out(doc)
    return 0


def cmd_usage(args: argparse.Namespace, settings: Settings) -> int:
    from .runtime import Runtime

    usage = Runtime(settings).pipeline.usage(args.account, args.month)
    usage["quota"] = settings.quota_for(args.account)
    _out(usage)
    return 0


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    if args.models_cmd == "pull":
        path = model_registry.pull(args.name, settings.models_dir,
                                   log=lambda m: print(m, file=sys.stderr),
                                   revision=args.revision)
        out: dict[str, Any] = {"name": args.name, "path": str(path)}
        if path.is_file():
            out["md5"] = model_registry.md5_of(path)
        _out(out)
        return 0
    loaded: dict[str, int] = {}
    try:
        import redis

        from .modelkeeper import loaded_anywhere

        loaded = loaded_anywhere(redis.Redis.from_url(settings.redis_url,
                                                      socket_connect_timeout=1), settings)
    except Exception:  # no Redis: list what is on disk
        pass
    rows = model_registry.installed(settings.models_dir, frozenset(loaded))
    for row in rows:
        row["loadedBy"] = loaded.get(row["name"], 0)
    _out(rows)
    return 0


def cmd_apply(args: argparse.Namespace, settings: Settings) -> int:
    """The whole pipeline in-process, on the embedded stores: no Redis, no broker."""
    from .runtime import Runtime

    queued: list[tuple[str, str]] = []
    runtime = Runtime(settings, embedded=True, enqueue=lambda q, j, s: queued.append((j, s)))
    p = runtime.pipeline
    image = Path(args.image)
    record = p.add_file(image.read_bytes(), image.name)
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
        out_path.write_bytes(p.blobs.get(final.current.blobKey))
    doc = p.get_job(doc["jobId"]) or doc
    _out(final.file_object())
    failed = {n: s["error"] for n, s in doc["extensions"].items() if s["status"] == "failed"}
    for name, err in failed.items():
        print(f"extworker: {name} failed: {err['message']}", file=sys.stderr)
    if final.versionInfo.id != record.versionInfo.id:
        print(f"extworker: wrote {out_path}", file=sys.stderr)
    return 1 if failed else 0


def _webhooks(settings: Settings) -> Any:
    import redis

    from webhooks.deliverer import Webhooks

    return Webhooks(redis.Redis.from_url(settings.redis_url), settings)


def cmd_secrets(args: argparse.Namespace, settings: Settings) -> int:
    hooks = _webhooks(settings)
    if args.secrets_cmd == "rotate":
        _out({"secret": hooks.secrets.rotate(args.account)})
    else:
        _out({"secret": hooks.secrets.current(args.account)})
    return 0


def cmd_deliveries(args: argparse.Namespace, settings: Settings) -> int:
    hooks = _webhooks(settings)
    if args.deliveries_cmd == "list":
        docs = hooks.store.list(file_id=args.file_id, job_id=args.job_id, status=args.status,
                                limit=args.limit)
        _out([{k: d[k] for k in ("id", "status", "service", "event", "jobId", "fileId", "url",
                                 "attempt", "series", "lastError", "createdAt", "nextAt")}
              for d in docs])
        return 0
    if args.deliveries_cmd == "show":
        doc = hooks.store.get(args.id)
        if doc is None:
            raise ExtworkerError(f"delivery not found: {args.id}")
        _out(doc)
        return 0
    try:
        doc = hooks.redeliver(args.id)
    except KeyError:
        raise ExtworkerError(f"delivery not found: {args.id}") from None
    except ValueError as e:
        raise ExtworkerError(str(e)) from None
    from dramatiq import Message

    from .actors import build_broker

    build_broker(settings).enqueue(Message(
        queue_name=settings.queue_webhooks, actor_name="deliver_due", args=(), kwargs={},
        options={}))
    _out({k: doc[k] for k in ("id", "status", "series", "url")})
    return 0


def _config(value: str | None) -> Any:
    return None if value is None else _json_arg(value)


def cmd_saved(args: argparse.Namespace, settings: Settings) -> int:
    from .runtime import Runtime

    rt = Runtime(settings)
    store, extra = rt.pipeline.saved, rt.registry.third_party_params()
    acct = args.account
    if args.saved_cmd == "create":
        _out(store.create(acct, args.name, args.description or "", _config(args.config), extra))
    elif args.saved_cmd == "list":
        _out(store.list(acct))
    elif args.saved_cmd == "get":
        item = store.get(acct, args.id)
        if item is None:
            raise ExtworkerError(f"saved extension not found: {args.id}")
        _out(item)
    elif args.saved_cmd == "update":
        _out(store.update(acct, args.id, name=args.name, description=args.description,
                          config=_config(args.config), extra=extra))
    else:
        if not store.delete(acct, args.id):
            raise ExtworkerError(f"saved extension not found: {args.id}")
        _out({"id": args.id, "deleted": True})
    return 0


def cmd_fields(args: argparse.Namespace, settings: Settings) -> int:
    from .runtime import Runtime

    store = Runtime(settings).pipeline.fields
    if args.fields_cmd == "create":
        raw = {"name": args.name, "label": args.label or args.name,
               "schema": {"type": args.type}}
        for key in ("selectOptions", "minValue", "maxValue", "minLength", "maxLength"):
            value = getattr(args, key)
            if value is not None:
                raw["schema"][key] = value
        _out(store.create(args.account, raw).public())
    elif args.fields_cmd == "list":
        _out([f.public() for f in store.all(args.account).values()])
    else:
        if not store.delete(args.account, args.name):
            raise ExtworkerError(f"custom metadata field not found: {args.name}")
        _out({"name": args.name, "deleted": True})
    return 0


def cmd_schema(args: argparse.Namespace, settings: Settings) -> int:
    from .contract import job_json_schema

    _out(job_json_schema())
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="extworker", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)

    sp = sub.add_parser("serve", help="run the dramatiq worker")
    sp.add_argument("--queues", nargs="+")
    sp.add_argument("--processes", type=int)
    sp.add_argument("--threads", type=int)
    sp.set_defaults(fn=cmd_serve)

    fp = sub.add_parser("files", help="a minimal stand-in for an upload service")
    fsub = fp.add_subparsers(dest="files_cmd", required=True)
    fa = fsub.add_parser("add")
    fa.add_argument("path")
    fa.add_argument("--name")
    fa.add_argument("--folder", default="/")
    fa.add_argument("--tags", help="comma-separated")
    fg = fsub.add_parser("get")
    fg.add_argument("file_id")
    fp.set_defaults(fn=cmd_files)

    su = sub.add_parser("submit", help="publish a job")
    su.add_argument("--file-id", required=True)
    su.add_argument("--extensions", required=True, type=_json_arg, help="JSON array or @file")
    su.add_argument("--webhook-url")
    su.add_argument("--account", default="default")
    su.add_argument("--job-id")
    su.add_argument("--dry-run", action="store_true", help="charge no units")
    su.add_argument("--remove-ai-tags", type=_json_arg, help='JSON: ["name", …] or "all"')
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

    sp2 = sub.add_parser("secrets", help="webhook signing secrets")
    ssub = sp2.add_subparsers(dest="secrets_cmd", required=True)
    for name in ("show", "rotate"):
        ssub.add_parser(name).add_argument("account")
    sp2.set_defaults(fn=cmd_secrets)

    dp = sub.add_parser("deliveries", help="the webhook delivery log")
    dsub = dp.add_subparsers(dest="deliveries_cmd", required=True)
    dl = dsub.add_parser("list")
    dl.add_argument("--file-id")
    dl.add_argument("--job-id")
    dl.add_argument("--status", choices=["pending", "delivered", "exhausted", "gone", "refused",
                                         "suppressed"])
    dl.add_argument("--limit", type=int, default=100)
    for name in ("show", "redeliver"):
        dsub.add_parser(name).add_argument("id")
    dp.set_defaults(fn=cmd_deliveries)

    sv = sub.add_parser("saved", help="saved extensions (reusable configurations)")
    svsub = sv.add_subparsers(dest="saved_cmd", required=True)
    c = svsub.add_parser("create")
    c.add_argument("--name", required=True)
    c.add_argument("--description", default="")
    c.add_argument("--config", required=True, help="JSON or @file.json")
    svsub.add_parser("list")
    svsub.add_parser("get").add_argument("id")
    u = svsub.add_parser("update")
    u.add_argument("id")
    u.add_argument("--name")
    u.add_argument("--description")
    u.add_argument("--config", help="JSON or @file.json")
    svsub.add_parser("delete").add_argument("id")
    for p in svsub.choices.values():
        p.add_argument("--account", default="default")
    sv.set_defaults(fn=cmd_saved)

    fl = sub.add_parser("fields", help="custom metadata fields")
    flsub = fl.add_subparsers(dest="fields_cmd", required=True)
    fc = flsub.add_parser("create")
    fc.add_argument("name")
    fc.add_argument("--label")
    fc.add_argument("--type", required=True, choices=["Text", "Textarea", "Number", "Date",
                                                        "Boolean", "SingleSelect", "MultiSelect"])
    fc.add_argument("--select-options", dest="selectOptions", type=_json_arg,
                    help='JSON array: ["red", "blue"]')
    fc.add_argument("--min-value", dest="minValue", type=float)
    fc.add_argument("--max-value", dest="maxValue", type=float)
    fc.add_argument("--min-length", dest="minLength", type=int)
    fc.add_argument("--max-length", dest="maxLength", type=int)
    flsub.add_parser("list")
    flsub.add_parser("delete").add_argument("name")
    for p in flsub.choices.values():
        p.add_argument("--account", default="default")
    fl.set_defaults(fn=cmd_fields)

    sc = sub.add_parser("schema", help="print the job JSON Schema")
    sc.set_defaults(fn=cmd_schema)

    apl = sub.add_parser("apply", help="run extensions on a local image, no Redis")
    apl.add_argument("image")
    apl.add_argument("--extensions", required=True, type=_json_arg)
    apl.add_argument("--account", default="default")
    apl.add_argument("-o", "--output")
    apl.set_defaults(fn=cmd_apply)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings()
        return int(args.fn(args, settings))
    except (ExtworkerError, OSError) as e:
        print(f"extworker: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # redis down, bad settings…: one readable line, not a traceback
        print(f"extworker: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
