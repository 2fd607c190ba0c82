"""The shape of the code: imports point downwards only, the web process loads no torch,
and no module grows past what a reader takes in one sitting (docs/architecture.md)."""

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("routing", "experts", "hub", "workers", "devtools")
MAX_LINES = 350


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules a module imports, wherever in it (function-level too)."""
    out = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            wanted = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".") if is_package else name.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            subs = [f"{base}.{a.name}" for a in node.names]
            modules_named = [s for s in subs if s in known]
            wanted = modules_named if len(modules_named) == len(subs) else [base, *modules_named]
        else:
            continue
        for target in wanted:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_cycle():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_imports_point_downwards_between_packages():
    """workers -> hub -> experts -> routing: an app never reaches up into the project, and
    the routing library into neither; the development tools use the library only."""
    layer = {"routing": 0, "devtools": 1, "experts": 1, "hub": 2, "workers": 3}
    upward = sorted(
        (a, b)
        for a, targets in graph().items()
        for b in targets
        if layer[b.split(".")[0]] > layer[a.split(".")[0]]
        or (a.split(".")[0] != b.split(".")[0] == "devtools")
        or (a.startswith("devtools") and not b.startswith(("routing", "devtools")))
    )
    assert upward == []


def test_the_graph_sees_function_level_and_relative_imports():
    edges = graph()
    assert "routing.kinds.classification.contract" in edges["routing.kinds.classification.kind"]
    assert "experts.services.jobs" in edges["experts.services.validation"]


def test_no_module_is_longer_than_a_sitting():
    long = {
        str(path.relative_to(ROOT)): n
        for path in [*modules().values(), *ROOT.glob("tests/**/*.py"), *ROOT.glob("bench/*.py")]
        if (n := len(path.read_text().splitlines())) > MAX_LINES and "migrations" not in path.parts
    }
    assert long == {}


WEB_PROCESS = """
import importlib, os, pkgutil, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
import django
django.setup()
import experts, hub.urls, hub.wsgi
for module in pkgutil.walk_packages(experts.__path__, "experts."):
    if ".migrations" not in module.name and ".management" not in module.name:
        importlib.import_module(module.name)
heavy = sorted(m for m in ("torch", "transformers", "peft") if m in sys.modules)
print(",".join(heavy) or "none")
"""


def test_the_web_process_imports_no_heavy_dependency():
    """Pages, the API and every service module load without torch, transformers or PEFT:
    a web process stays small, and a kind's tensor code loads in workers only."""
    out = subprocess.run(
        [sys.executable, "-c", WEB_PROCESS], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "none"


# --- the kind seam: everything kind-specific sits behind routing.kinds ------------------

KIND_SEEDER = {"experts.services.demo"}  # the demo names the kinds of its demo mixtures


def kind_names() -> set[str]:
    from routing.kinds import KINDS

    return set(KINDS)


def naming_kinds(path: Path) -> list[tuple[int, str]]:
    """The string literals of a module that name a kind of mixture (line, literal)."""
    names = kind_names()
    return [
        (node.lineno, node.value)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names
    ]


def test_no_module_outside_the_kinds_names_a_kind():
    """A kind is compared, chosen or described by name only under `routing/kinds/`: the hub
    reads the facts of `KindInfo` (its queue, metric, labels, generation, settings), so a
    third kind is a package there and nothing else (the demo seeder aside)."""
    found = {
        f"{name}:{line}": literal
        for name, path in modules().items()
        if not name.startswith("routing.kinds") and name not in KIND_SEEDER
        for line, literal in naming_kinds(path)
    }
    assert found == {}


def test_the_kind_check_sees_a_comparison_by_name(tmp_path):
    leaky = tmp_path / "leaky.py"
    leaky.write_text('def f(m):\n    return m.kind == "causal-lm"\n')
    assert naming_kinds(leaky) == [(2, "causal-lm")]


TEMPLATE_LEAKS = re.compile(r"kind\.name|\.task_type|causal-lm|\"classification\"|'classification'")


def test_no_template_of_the_hub_compares_a_kind():
    """The hub's templates read the kind's facts (`kind.generates`, `kind.has_labels`,
    `kind.metric_title`) and include its own parts (`kind.parts.contract`)."""
    leaks = {
        str(path.relative_to(ROOT)): TEMPLATE_LEAKS.findall(path.read_text())
        for path in (ROOT / "templates").rglob("*.html")
    }
    assert {k: v for k, v in leaks.items() if v} == {}
