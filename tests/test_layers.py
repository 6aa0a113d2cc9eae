"""The code's imports form layers (README, "Code map"): shared infrastructure, then domains,
then cross-domain workflows, then HTTP (API, console, portal) and jobs, then the entry points.
Read from the source with `ast`, so a new import that breaks the layering fails here."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "loyalty"

INFRASTRUCTURE, DOMAIN, WORKFLOW, HTTP, ENTRY = range(5)
LAYER_NAMES = ["infrastructure", "domain", "workflow", "http", "entry point"]

# Modules at the top level of loyalty/ and where they sit.
TOP_LEVEL = {
    "loyalty": INFRASTRUCTURE,
    "loyalty.settings": INFRASTRUCTURE,
    "loyalty.errors": INFRASTRUCTURE,
    "loyalty.auth": INFRASTRUCTURE,
    "loyalty.piccolo_conf": INFRASTRUCTURE,
    "loyalty.app": ENTRY,
    "loyalty.cli": ENTRY,
    "loyalty.worker": ENTRY,
    "loyalty.demo": ENTRY,
    "loyalty.__main__": ENTRY,
}
PACKAGES = {
    "infrastructure": INFRASTRUCTURE,
    "workflows": WORKFLOW,
    # Bulk enrolment and sale posting from files: a workflow over members, points, tiers,
    # referrals and reps (its own tables only record the runs).
    "imports": WORKFLOW,
    "http": HTTP,
    "portal": HTTP,
    "console": HTTP,
}
# Inside a package, these files are not the domain itself: HTTP and jobs use workflows.
HTTP_FILES = {"controllers", "jobs"}
ENTRY_FILES = {"cli"}

# Function-level imports of loyalty modules in domain modules, each with why it cannot be at
# the top. Keep this empty unless there is no other way.
ALLOWED_FUNCTION_IMPORTS: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    in_function: bool


def module_name(path: Path, root: Path = PACKAGE.parent) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def layer(module: str) -> int:
    if module in TOP_LEVEL:
        return TOP_LEVEL[module]
    parts = module.split(".")
    if len(parts) == 2 and (PACKAGE / f"{parts[1]}.py").exists():
        raise AssertionError(f"{module} is loose at the top of loyalty/: give it a layer here")
    if len(parts) > 2 and parts[-1] in HTTP_FILES:
        return HTTP
    if len(parts) > 2 and parts[-1] in ENTRY_FILES:
        return ENTRY
    return PACKAGES.get(parts[1], DOMAIN)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(module: str, path: Path, known: dict[str, Path]) -> list[Import]:
    found: list[Import] = []

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking_only(child):
                continue
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            targets: list[str] = []
            if isinstance(child, ast.Import):
                targets = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                targets = [f"{child.module}.{alias.name}" for alias in child.names]
            for target in targets:
                if target.startswith("loyalty"):
                    resolved = resolve(target)
                    if resolved and resolved != module:
                        found.append(Import(module, resolved, child.lineno, in_function))
            visit(child, inside)

    visit(ast.parse(path.read_text(), str(path)), False)
    return found


def all_imports() -> list[Import]:
    known = modules()
    return [found for name, path in known.items() for found in imports_of(name, path, known)]


def cycles(edges: list[Import]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.importer, set()).add(edge.imported)
        graph.setdefault(edge.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph[node]:
            if successor not in index:
                connect(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components


def test_no_import_cycles_between_modules():
    found = cycles(all_imports())
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_imports_only_go_down_the_layers():
    upward = [
        f"{i.importer} ({LAYER_NAMES[layer(i.importer)]}) imports {i.imported} "
        f"({LAYER_NAMES[layer(i.imported)]}) at line {i.line}"
        for i in all_imports()
        if layer(i.imported) > layer(i.importer)
    ]
    assert upward == []


def test_domain_modules_import_loyalty_at_the_top():
    hidden = [
        f"{i.importer} line {i.line}: {i.imported}"
        for i in all_imports()
        if i.in_function
        and layer(i.importer) in (INFRASTRUCTURE, DOMAIN)
        and (i.importer, i.imported) not in ALLOWED_FUNCTION_IMPORTS
    ]
    assert hidden == [], "import these at the top, or list them with a reason"


def test_the_checks_see_a_cycle_and_a_hidden_import(tmp_path):
    """The checks themselves: a two-module cycle and an import inside a function are found."""
    package = tmp_path / "loyalty"
    (package / "members").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "members" / "__init__.py").write_text("")
    (package / "members" / "service.py").write_text(
        "from loyalty.members import rules\n\ndef f():\n    from loyalty.members import rules\n"
    )
    (package / "members" / "rules.py").write_text("from loyalty.members.service import f\n")
    known = {module_name(p, tmp_path): p for p in package.rglob("*.py")}
    edges = [e for name, path in known.items() for e in imports_of(name, path, known)]
    assert cycles(edges) == [["loyalty.members.rules", "loyalty.members.service"]]
    assert [(e.importer, e.line) for e in edges if e.in_function] == [
        ("loyalty.members.service", 4)
    ]
