"""``extworker``: every command prints JSON on stdout; errors go to stderr, exit non-zero.

One module per group of commands, each adding its own subparsers: ``jobs`` (files, jobs,
the worker, models), ``accounts`` (secrets, deliveries, saved extensions, fields), ``api``
(the HTTP API, keys) and ``store`` (copying the document store).
"""

from __future__ import annotations

import argparse
import sys

from worker.cli import accounts, api, jobs, store
from worker.core.errors import ExtworkerError
from worker.core.settings import Settings


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="extworker", description="Every command prints JSON on "
                                 "stdout; errors go to stderr with a non-zero exit.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    jobs.add_parsers(sub)
    accounts.add_parsers(sub)
    api.add_parsers(sub)
    store.add_parsers(sub)
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

