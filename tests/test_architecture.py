"""The shape holds: dependencies point one way, no import cycle, no wiring from outside.

- The layers contract in ``pyproject.toml`` (``[tool.importlinter]``), checked by
  import-linter exactly as ``lint-imports`` does on the command line.
- No cycle among modules (grimp's import graph, lazy imports inside functions included):
  Tarjan's strongly connected components over every module of the three packages.
- Collaborators are passed in: an attribute that some ``__init__`` sets from one of its
  parameters is never assigned from outside an object (``x.notify = …``) — not in the
  packages, not in the tests.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("worker", "extensions", "webhooks")


def test_the_layers_contract_is_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 kept, 0 broken" in proc.stdout


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    break
                if child in on:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        m = stack.pop()
                        on.discard(m)
                        group.append(m)
                        if m == node:
                            break
                    if len(group) > 1:
                        found.append(sorted(group))
    return found


def _graph() -> dict[str, set[str]]:
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def test_no_import_cycle_between_modules():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def _collaborators() -> set[str]:
    """Attributes an ``__init__`` sets straight from one of its parameters."""
    names: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.FunctionDef) and node.name == "__init__"):
                    continue
                params = {a.arg for a in node.args.args + node.args.kwonlyargs}
                for stmt in ast.walk(node):
                    if (isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Name)
                            and stmt.value.id in params):
                        for t in stmt.targets:
                            if (isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name)
                                    and t.value.id == "self"):
                                names.add(t.attr)
    return names


def _wired_from_outside(names: set[str]) -> list[str]:
    found = []
    for folder in (*PACKAGES, "tests", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                targets = node.targets if isinstance(node, ast.Assign) else (
                    [node.target] if isinstance(node, ast.AnnAssign | ast.AugAssign) else [])
                for t in targets:
                    if (isinstance(t, ast.Attribute) and t.attr in names
                            and not (isinstance(t.value, ast.Name) and t.value.id == "self")):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}: "
                                     f"{ast.unparse(t)} = …")
    return found


def test_no_collaborator_is_wired_from_outside_a_constructor():
    names = _collaborators()
    assert {"notify", "enqueue", "observe", "on_change", "on_attempt", "wake"} <= names
    assert _wired_from_outside(names) == []


def test_redis_keys_are_built_in_one_module_and_keep_their_names():
    """``worker.core.keys`` builds every key; the names are the ones stored data has."""
    from worker.core.keys import Keys

    k = Keys("ns", "intake")
    assert [k.job("j"), k.file("f"), k.path("acme", "/a.jpg"), k.file_index("acme"),
            k.units("acme", "2026-11"), k.claim("j", "remove-bg"), k.intake(),
            k.account_docs("saved", "acme"), k.models_loaded("h-1"), k.doctor_report(),
            k.webhook_delivery("d"), k.webhook_due(), k.webhook_dead(), k.webhook_stats(),
            k.webhook_index(), k.webhook_kick(), k.webhook_secret("acme"),
            k.webhook_kdf_salt()] == [
        "ns:job:j", "ns:file:f", "ns:path:acme:/a.jpg", "ns:files:acme",
        "ns:units:acme:2026-11", "ns:claim:j:remove-bg", "ns:intake", "ns:saved:acme",
        "ns:models:loaded:h-1", "ns:doctor", "ns:wh:delivery:d", "ns:wh:due", "ns:wh:dead",
        "ns:wh:stats", "ns:wh:index", "ns:wh:kick", "ns:wh:secret:acme",
        "ns:wh:secret:kdf-salt"]
    # Nowhere else: no f-string in the packages puts a namespace, a prefix or dramatiq's
    # queue prefix in front of a ":".
    offenders = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "keys.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.JoinedStr):
                    text = ast.unparse(node)
                    if re.search(r"dramatiq:|namespace\}:|prefix\}:(?! )", text):
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {text}")
    assert offenders == []
