"""The source layout's rules (docs/architecture.md): no import circles between modules or
packages, family knowledge only in dsedge/archs/, and no production module imports the reference
training script."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from dsedge.archs import REGISTRY

SRC = Path(__file__).parents[1] / "src" / "dsedge"


def _module(p: Path) -> str:
    parts = list(p.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    """Module -> the dsedge modules it imports (function-level imports included)."""
    mods = {_module(p): p for p in SRC.rglob("*.py")}
    out = {}
    for m, p in mods.items():
        deps = set()
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, ast.Import):
                names = [a.name for a in n.names]
            elif isinstance(n, ast.ImportFrom):
                base = m.split(".") if p.name == "__init__.py" else m.split(".")[:-1]
                base = base[:len(base) - max(n.level - 1, 0)] if n.level else []
                prefix = ".".join(base + ([n.module] if n.module else [])) if n.level else n.module
                subs = [f"{prefix}.{a.name}" for a in n.names if f"{prefix}.{a.name}" in mods]
                # `from . import sub` imports the submodule; anything else is the module `prefix` itself
                names = subs + ([prefix] if len(subs) < len(n.names) else [])
            else:
                continue
            deps |= {d for d in names if d in mods and d != m}
        out[m] = deps
    return out


def _cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while not comp or comp[-1] != v:
                comp.append(stack.pop())
                on.discard(comp[-1])
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in list(g):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles_between_modules_or_packages():
    g = _graph()
    assert _cycles(g) == []
    top = lambda m: ".".join(m.split(".")[:2])                      # dsedge.<package or module>
    packages: dict[str, set[str]] = {}
    for m, deps in g.items():
        packages.setdefault(top(m), set()).update(top(d) for d in deps if top(d) != top(m))
    assert _cycles(packages) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_nothing_in_the_package_imports_the_training_script():
    users = [m for m, deps in _graph().items() if "dsedge.reference.train" in deps]
    assert users == []


def test_no_module_outside_archs_names_a_family():
    """Architecture class names, model types and reference checkpoint names appear only in archs/
    (and in the reference checkpoints' own files)."""
    words = set()
    for s in REGISTRY.values():
        words |= {s.name, s.model_type}
        words |= {r.name for r in (s.reference, s.text_reference) if r is not None}
    rx = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, sorted(words, key=len, reverse=True))) + r")(?![\w-]|\.cpp)", re.I)   # llama.cpp is a peer, not the family
    offenders = []
    for p in SRC.rglob("*.py"):
        rel = p.relative_to(SRC)
        if rel.parts[0] == "archs":
            continue
        for i, line in enumerate(p.read_text().splitlines(), 1):
            if rx.search(line):
                offenders.append(f"{rel}:{i}: {line.strip()}")
    assert offenders == []
