"""``extworker store``: the document store itself — ``copy`` one backend into another."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from worker.cli.common import emit
from worker.core.settings import Settings


def open_url(url: str, settings: Settings) -> Any:
    """A store as a copy's source or destination (``redis://``, ``postgresql://``,
    ``sqlite:///<dir>``), with ``export``/``import_``/``count``."""
    import redis

    from worker.store.backends import open_store
    from worker.store.backends.redis_kv import RedisKV
    from worker.store.copy import RedisSource

    kv = open_store(settings.model_copy(update={"store_url": url}),
                    redis.Redis.from_url(url) if url.startswith(("redis", "unix")) else None)
    return RedisSource(kv, settings.keys) if isinstance(kv, RedisKV) else kv


def _redacted(url: str) -> str:
    """``url`` without its password (the progress bar's label)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{parts.username or ''}:***@{host}").geturl()


def cmd_copy(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from worker.store.copy import copy_id, copy_store

    source, destination = open_url(args.source, settings), open_url(args.to, settings)
    source_id = copy_id(args.source, args.to)
    state = Path(args.state or f"extworker-store-copy-{source_id}.json")
    total = source.count()
    with tqdm(total=total, unit="item", desc=f"{_redacted(args.source)} → "
              f"{_redacted(args.to)}", file=sys.stderr, disable=args.quiet) as bar:
        report = copy_store(source, destination, state, source_id, batch=args.batch,
                            progress=bar.update)
    assert report is not None
    emit(report.to_json())
    for problem in report.differences:
        print(f"extworker store copy: {problem}", file=sys.stderr)
    return 1 if report.differences else 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    sp = sub.add_parser("store", help="the document store: copy it to another backend")
    ssub = sp.add_subparsers(dest="store_cmd", required=True)
    cp = ssub.add_parser("copy", help="copy every record, job, unit count, saved extension "
                         "and field (resumable: run it again after a stop; verified)")
    cp.add_argument("--from", dest="source", required=True,
                    help="redis://…, postgresql://… or sqlite:///<dir>")
    cp.add_argument("--to", required=True, help="redis://…, postgresql://… or sqlite:///<dir>")
    cp.add_argument("--batch", type=int, default=500)
    cp.add_argument("--state", help="where progress is kept (default: "
                    "./extworker-store-copy-<id>.json; removed once verified)")
    cp.add_argument("--quiet", action="store_true", help="no progress bar")
    cp.set_defaults(fn=cmd_copy)
