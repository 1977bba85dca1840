"""Per-account commands: webhook ``secrets``, the ``deliveries`` log, ``saved``
extensions and custom metadata ``fields``."""

from __future__ import annotations

import argparse
from typing import Any

from worker.cli.common import emit, json_arg
from worker.core.errors import ExtworkerError
from worker.core.settings import Settings


def _webhooks(settings: Settings) -> Any:
    import redis

    from webhooks.deliverer import Webhooks

    return Webhooks(redis.Redis.from_url(settings.redis_url), settings)


def cmd_secrets(args: argparse.Namespace, settings: Settings) -> int:
    hooks = _webhooks(settings)
    if args.secrets_cmd == "rotate":
        emit({"secret": hooks.secrets.rotate(args.account)})
    else:
        emit({"secret": hooks.secrets.current(args.account)})
    return 0


def cmd_deliveries(args: argparse.Namespace, settings: Settings) -> int:
    hooks = _webhooks(settings)
    if args.deliveries_cmd == "list":
        docs = hooks.store.list(file_id=args.file_id, job_id=args.job_id, status=args.status,
                                limit=args.limit)
        emit([{k: d[k] for k in ("id", "status", "service", "event", "jobId", "fileId", "url",
                                 "attempt", "series", "lastError", "createdAt", "nextAt")}
              for d in docs])
        return 0
    if args.deliveries_cmd == "show":
        doc = hooks.store.get(args.id)
        if doc is None:
            raise ExtworkerError(f"delivery not found: {args.id}")
        emit(doc)
        return 0
    try:
        doc = hooks.redeliver(args.id)
    except KeyError:
        raise ExtworkerError(f"delivery not found: {args.id}") from None
    except ValueError as e:
        raise ExtworkerError(str(e)) from None
    from worker.broker.actors import build_broker
    from worker.broker.outbox import Outbox

    Outbox(build_broker(settings), settings).wake_webhooks()
    emit({k: doc[k] for k in ("id", "status", "series", "url")})
    return 0


def _config(value: str | None) -> Any:
    return None if value is None else json_arg(value)


def cmd_saved(args: argparse.Namespace, settings: Settings) -> int:
    from worker.runtime import Runtime

    rt = Runtime(settings)
    store = rt.pipeline.saved
    acct = args.account
    if args.saved_cmd == "create":
        emit(store.create(acct, args.name, args.description or "", _config(args.config)))
    elif args.saved_cmd == "list":
        emit(store.list(acct))
    elif args.saved_cmd == "get":
        item = store.get(acct, args.id)
        if item is None:
            raise ExtworkerError(f"saved extension not found: {args.id}")
        emit(item)
    elif args.saved_cmd == "update":
        emit(store.update(acct, args.id, name=args.name, description=args.description,
                          config=_config(args.config)))
    else:
        if not store.delete(acct, args.id):
            raise ExtworkerError(f"saved extension not found: {args.id}")
        emit({"id": args.id, "deleted": True})
    return 0


def cmd_fields(args: argparse.Namespace, settings: Settings) -> int:
    from worker.runtime import Runtime

    store = Runtime(settings).pipeline.fields
    if args.fields_cmd == "create":
        raw = {"name": args.name, "label": args.label or args.name,
               "schema": {"type": args.type}}
        for key in ("selectOptions", "minValue", "maxValue", "minLength", "maxLength"):
            value = getattr(args, key)
            if value is not None:
                raw["schema"][key] = value
        emit(store.create(args.account, raw).public())
    elif args.fields_cmd == "list":
        emit([f.public() for f in store.all(args.account).values()])
    else:
        if not store.delete(args.account, args.name):
            raise ExtworkerError(f"custom metadata field not found: {args.name}")
        emit({"name": args.name, "deleted": True})
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register these commands on ``extworker``'s subparsers."""
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
    fc.add_argument("--select-options", dest="selectOptions", type=json_arg,
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
