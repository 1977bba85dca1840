"""``extworker api`` (the HTTP server) and ``extworker keys`` (its API keys)."""

from __future__ import annotations

import argparse
import os

from worker.cli.common import emit
from worker.core.errors import ExtworkerError
from worker.core.settings import Settings


def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    """Serve the HTTP API (uvicorn), dispatching into the workers' queues."""
    try:
        import uvicorn
    except ImportError:
        raise ExtworkerError("the HTTP API needs the `api` extra: pip install "
                             "'extworker[api]'") from None
    from worker.api.app import create_app
    from worker.broker.actors import build_broker
    from worker.runtime import Runtime
    from worker.telemetry.logs import configure

    configure(settings)  # JSON lines; the access log names routes, never keys
    if "api_url" not in settings.model_fields_set:
        # No address configured: file URLs name the address this API listens on (a
        # wildcard host as loopback), never a port nothing serves.
        host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(args.host, args.host)
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        settings = settings.model_copy(update={"api_url": f"http://{host}:{args.port}"})
        os.environ["EXTWORKER_API_URL"] = settings.api_url  # what --workers processes read
    if args.workers > 1:
        # Each process builds its own app from the environment; delivery's single flight
        # spans them through Redis.
        uvicorn.run("worker.api.asgi:app", factory=True, workers=args.workers,
                    host=args.host, port=args.port, timeout_graceful_shutdown=30,
                    log_level="warning")
        return 0
    runtime = Runtime(settings, broker=build_broker(settings))
    uvicorn.run(create_app(runtime), host=args.host, port=args.port,
                timeout_graceful_shutdown=30, log_level="warning")
    return 0


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    import redis

    from webhooks.secrets import SecretStore
    from worker.store.apikeys import ApiKeys
    from worker.store.backends import open_store

    client = redis.Redis.from_url(settings.redis_url)
    # Sealed like the runtime seals them: signed URLs and client-side uploads need the key.
    sealer = SecretStore(client, settings.keys, settings.secret_key,
                         settings.webhook_secret_grace_s)
    keys = ApiKeys(open_store(settings, client), settings, sealer)
    if args.keys_cmd == "create":
        emit(keys.create(args.account))
    elif args.keys_cmd == "list":
        emit(keys.list(args.account))
    else:
        keys.revoke(args.account, args.id)
        emit({"id": args.id, "revoked": True})
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    ap = sub.add_parser("api", help="serve the HTTP API (the hosted API's shape)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--workers", type=int, default=1,
                    help="processes (each with its own derivation threads); default 1")
    ap.set_defaults(fn=cmd_api)

    kp = sub.add_parser("keys", help="private API keys of the HTTP API")
    ksub = kp.add_subparsers(dest="keys_cmd", required=True)
    ksub.add_parser("create").add_argument("account")
    ksub.add_parser("list").add_argument("account")
    rv = ksub.add_parser("revoke")
    rv.add_argument("account")
    rv.add_argument("id")
    kp.set_defaults(fn=cmd_keys)
