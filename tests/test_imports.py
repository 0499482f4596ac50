"""The house's import rules, read from the code (every import statement, those inside functions and under
TYPE_CHECKING included): no import circle, the bot and the worker never import each other, and what the
processes serve never reaches the training code (TensorFlow, data sets, packaging)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "worker", "shared", "models", "skinsense")
# models/ is in two rooms: what the processes serve (models.serving) and what trains it (models.training).
TRAINING = "models.training"


def module_files() -> dict[str, Path]:
    files: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def imported_names(path: Path, module: str) -> Iterator[str]:
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package
                base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target
            yield from (f"{target}.{alias.name}" for alias in node.names)  # "from pkg import module"


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        targets = {name for name in imported_names(path, module) if name in files}
        graph[module] = {target for target in targets if target != module}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def reachable(graph: dict[str, set[str]], starts: set[str]) -> set[str]:
    seen, todo = set(starts), list(starts)
    while todo:
        for target in graph[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_no_module_imports_itself_round_a_circle() -> None:
    assert circles(import_graph()) == []


def test_the_circle_finder_finds_a_circle() -> None:
    """The rule above can fail: a circle of three, closed by a lazy import, is reported."""
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_bot_and_the_worker_never_import_each_other() -> None:
    graph = import_graph()
    for module, targets in graph.items():
        for side, other in (("bot", "worker"), ("worker", "bot")):
            if module.split(".")[0] == side:
                assert not {t for t in targets if t.split(".")[0] == other}, f"{module} imports {other}/"


def is_training(module: str) -> bool:
    return module == TRAINING or module.startswith(f"{TRAINING}.")


def test_serving_never_imports_training() -> None:
    graph = import_graph()
    serving = {module for module in graph if module.startswith("models.serving")}
    assert {target for target in reachable(graph, serving) if is_training(target)} == set()


def test_what_the_bot_and_workers_load_never_reaches_the_training_code() -> None:
    graph = import_graph()
    served = reachable(graph, {module for module in graph if module.split(".")[0] in ("bot", "worker")})
    assert {module for module in served if is_training(module)} == set()
    assert "models.serving.inference" in served and "models.serving.explain" in served  # the walk reaches models/
    assert any(is_training(module) for module in graph)  # and the rule names a room that exists
