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

from tests.support import ROOT

PACKAGES = ("worker", "extensions", "webhooks")


def test_the_import_contracts_are_kept():
    """The layers, and the independence of the API's routers and of the console's pages."""
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "3 kept, 0 broken" in proc.stdout


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


def _app_state_in_root(path: Path, target: ast.expr) -> bool:
    """``app.state.<name> = …`` in the API's composition root (``create_app``): Starlette's
    own holder of app-wide objects, which the routes' dependencies read."""
    return (path == ROOT / "worker" / "api" / "app.py" and isinstance(target, ast.Attribute)
            and ast.unparse(target.value) == "app.state")


def _wired_from_outside(names: set[str]) -> list[str]:
    found = []
    for folder in (*PACKAGES, "tests", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                targets = node.targets if isinstance(node, ast.Assign) else (
                    [node.target] if isinstance(node, ast.AnnAssign | ast.AugAssign) else [])
                for t in targets:
                    if _app_state_in_root(path, t):
                        continue
                    if (isinstance(t, ast.Attribute) and t.attr in names
                            and not (isinstance(t.value, ast.Name) and t.value.id == "self")):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}: "
                                     f"{ast.unparse(t)} = …")
    return found


def test_no_collaborator_is_wired_from_outside_a_constructor():
    names = _collaborators()
    assert {"notify", "enqueue", "observe", "on_change", "on_attempt", "wake"} <= names
    assert _wired_from_outside(names) == []


def test_no_id_can_build_a_key_of_another_meaning():
    """Every key builder, run with adversarial ids (other keys' words, separators, escapes,
    patterns): two different (builder, arguments) never give the same key."""
    import inspect
    import itertools

    from worker.core.keys import ACCOUNT_DOC_KINDS, Keys

    k = Keys("ns", "intake")
    ids = ["kdf-salt", "index", "kick", "due", "dead", "stats", "secret", "delivery",
           "loaded", "acme", "a:b", "a", "b", "b:c", "/x", "a:/x", ":", "::", "%", "%3A",
           "%253A", "", "*", "job", "file", "files", "path", "saved", "fields", "units",
           "2026-11", "a:2026-11", "intake", "doctor", "wh", "wh:due", "secret:kdf-salt"]
    meanings: dict[str, tuple] = {}
    clashes = []
    builders = 0
    for name, method in inspect.getmembers(k, inspect.ismethod):
        # Not keys of their own: a SCAN pattern, and where earlier versions kept the salt
        # (account kdf-salt's key, by definition: the salt is moved away from it).
        if name.startswith("_") or name in ("job_pattern", "file_pattern", "pattern",
                                            "is_store_key", "webhook_kdf_salt_before"):
            continue
        params = list(inspect.signature(method).parameters)
        builders += 1
        choices = [sorted(ACCOUNT_DOC_KINDS) if p == "kind" else ids for p in params]
        for args in itertools.product(*choices):
            key = method(*args)
            meaning = (name, args)
            if meanings.setdefault(key, meaning) != meaning:
                clashes.append((key, meanings[key], meaning))
    assert builders >= 19
    assert clashes == []
    # The very collision this guards against, and escaping that keeps ordinary names.
    assert k.webhook_secret("kdf-salt") != k.webhook_kdf_salt()
    assert k.job("a:b") == "ns:job:a:b" and k.path("a:b", "/c:d") == "ns:path:a%3Ab:/c:d"


def test_the_document_stores_keys_are_told_from_redis_own():
    """``extworker store copy`` moves the store's keys and nothing else: every key the
    stores write is one, none of Redis's own (claims, locks, sessions, webhooks) is."""
    from worker.core.keys import Keys

    k = Keys("ns", "intake")
    store = [k.job("j"), k.file("f"), k.path("a", "/x.jpg"), k.file_index("a"),
             k.units("a", "2026-12"), k.folder_index("a"), k.job_index("a"),
             k.file_jobs("f"), "ns:bulkjob:a:j", k.account_docs("saved", "a"),
             k.account_docs("fields", "a"), k.account_docs("apikeys", "a"), k.api_key("d"),
             k.account_docs("settings", "a")]
    redis_own = [k.claim("j", "e"), k.derive_lock("b"), k.console_session("s"),
                 k.console_flash("s"), k.console_cookie_key(), k.upload_token("a", "t"), k.intake(),
                 k.models_loaded("w"), k.doctor_report(), k.webhook_delivery("d"),
                 k.webhook_due(), k.webhook_secret("a"), k.webhook_kdf_salt(),
                 k.webhook_account_index("a"),
                 "other:file:f", "dramatiq:default"]
    assert [key for key in store if not k.is_store_key(key)] == []
    assert [key for key in redis_own if k.is_store_key(key)] == []


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
        "ns:wh:kdf-salt"]
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


# --- Nothing outside the checkout --------------------------------------------------------
# A fresh clone must pass on its own: no test, script or benchmark reads a path beside or
# above the repository (a data folder next to the clone, a parent's parent of ``__file__``).

CODE = ("*.py", "*.sh", "*.mjs", "*.cjs", "*.js")
CODE_FILES = (".ci/run", "Dockerfile")
# Names of folders that only ever existed beside a checkout; built so this file never
# matches itself.
BESIDE = re.compile("|".join(("\\.\\./" + "shared", "/work/" + "shared", "metadata" + "-samples")))
SHELL_UP = re.compile(r"\$\(dirname \"?\$(?:0|\{BASH_SOURCE\[0\]\})\"?\)((?:/\.\.)+)")
# Calls that keep a path's level: methods of a path, and functions of one path argument.
_METHODS = {"resolve", "absolute", "with_name", "with_suffix"}
_FUNCTIONS = {"Path", "PurePath", "str", "abspath", "realpath", "fspath"}


def _code_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    out = []
    for name in sorted(set(listed.split())):
        path = ROOT / name
        if path.is_file() and (name in CODE_FILES or any(path.match(g) for g in CODE)):
            out.append(path)
    return out


def _height(node: ast.AST, here: int, names: dict[str, int]) -> int | None:
    """How many path components below the repository root ``node`` points, when it is a
    path built from ``__file__`` (``tests/x.py``'s ``__file__`` is 2, its ``.parent`` 1,
    the root 0; below 0 is outside the checkout); None for anything else."""
    if isinstance(node, ast.Name):
        return here if node.id == "__file__" else names.get(node.id)
    if isinstance(node, ast.Attribute) and node.attr == "parent":
        h = _height(node.value, here, names)
        return None if h is None else h - 1
    if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute)
            and node.value.attr == "parents" and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, int)):
        h = _height(node.value.value, here, names)
        return None if h is None else h - 1 - node.slice.value
    if isinstance(node, ast.Call):
        fn = node.func
        name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
        if isinstance(fn, ast.Attribute) and name in _METHODS:
            return _height(fn.value, here, names)
        if name in _FUNCTIONS | {"dirname"} and node.args:
            h = _height(node.args[0], here, names)
            return None if h is None else h - (name == "dirname")
        return None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        h = _height(node.left, here, names)
        if h is None:
            return None
        if isinstance(node.right, ast.Constant) and isinstance(node.right.value, str):
            lowest = h
            for part in node.right.value.split("/"):
                h += -1 if part == ".." else (0 if part in ("", ".") else 1)
                lowest = min(lowest, h)
            return lowest if lowest < 0 else h
        return h + 1
    return None


def _module_names(tree: ast.Module, here: int, imported: dict[str, int]) -> dict[str, int]:
    names = dict(imported)
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign | ast.AnnAssign):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            h = None if stmt.value is None else _height(stmt.value, here, names)
            for t in targets:
                if isinstance(t, ast.Name) and h is not None:
                    names[t.id] = h
    return names


def _outside_the_checkout(files: dict[str, str]) -> list[str]:
    """``path:line: what`` for every place that reaches outside the checkout; ``files`` maps a
    path relative to the root to its text."""
    found = []
    trees, tables = {}, {}
    for rel, text in files.items():
        if rel.endswith(".py"):
            trees[rel] = ast.parse(text)
            tables[rel] = _module_names(trees[rel], len(Path(rel).parts), {})
    for rel, text in files.items():
        for n, line in enumerate(text.splitlines(), 1):
            if BESIDE.search(line):
                found.append(f"{rel}:{n}: {line.strip()}")
            up = SHELL_UP.search(line)
            if up and up.group(1).count("..") > len(Path(rel).parts) - 1:
                found.append(f"{rel}:{n}: {line.strip()}")
        if rel not in trees:
            continue
        imported = {}
        for stmt in trees[rel].body:
            if isinstance(stmt, ast.ImportFrom) and stmt.module:
                base = stmt.module.replace(".", "/")
                source = base + ".py" if base + ".py" in tables else base + "/__init__.py"
                for alias in stmt.names:
                    if alias.name in tables.get(source, {}):
                        imported[alias.asname or alias.name] = tables[source][alias.name]
        names = _module_names(trees[rel], len(Path(rel).parts), imported)
        for node in ast.walk(trees[rel]):
            h = _height(node, len(Path(rel).parts), names)
            if h is not None and h < 0:
                found.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
    return sorted(set(found))


def test_nothing_reads_a_path_outside_the_checkout():
    files = {str(p.relative_to(ROOT)): p.read_text(errors="replace") for p in _code_files()
             if p.name != "test_architecture.py"}
    assert len(files) > 50
    assert _outside_the_checkout(files) == []


def test_the_outside_finder_finds_what_it_names():
    planted = {
        "tests/support/__init__.py": ("from pathlib import Path\n"
                                      "ROOT = Path(__file__).resolve().parents[2]\n"),
        "tests/a.py": "from tests.support import ROOT\nX = ROOT.parent / 'data'\n",
        "tests/b.py": "from pathlib import Path\nY = Path(__file__).resolve().parents[2]\n",
        "tests/c.py": "from pathlib import Path\nZ = Path(__file__).parent / '..' / '..' / 'x'\n",
        "benchmarks/d.py": "import os\nW = os.path.dirname(os.path.dirname(os.path.dirname("
                           "os.path.abspath(__file__))))\n",
        "scripts/e.sh": 'cd "$(dirname "$0")/../.."\n',
        "tests/f.py": "DATA = '" + "../" + "shared/x'\n",
    }
    found = _outside_the_checkout(planted)
    assert sorted({f.split(":")[0] for f in found}) == [
        "benchmarks/d.py", "scripts/e.sh", "tests/a.py", "tests/b.py", "tests/c.py", "tests/f.py"]
    fine = {
        "tests/support/__init__.py": planted["tests/support/__init__.py"],
        "tests/a.py": "from tests.support import ROOT\nX = ROOT / 'tests' / 'data'\n",
        "tests/b.py": "from pathlib import Path\nY = Path(__file__).resolve().parents[1]\n",
        "benchmarks/d.py": "import os\nW = os.path.dirname(os.path.dirname("
                           "os.path.abspath(__file__)))\n",
        "scripts/e.sh": 'cd "$(dirname "$0")/.."\n',
        "tests/g.py": "BAD_KEY = '../etc/passwd'  # a traversal the code must refuse\n",
    }
    assert _outside_the_checkout(fine) == []
