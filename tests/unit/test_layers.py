"""The package's layers run one way: no module imports from a layer above its own, and no import circle.

Every `import` and `from ... import` of a kafkatrail module counts, at module level, inside functions and
under `if TYPE_CHECKING:` alike: a type-only import still ties the lower module to the upper one.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]

# Bottom to top; a module may import from its own layer and the layers below it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("contract", ("kafkatrail.schemas", "kafkatrail.deploy")),
    ("ground", ("kafkatrail.core",)),
    ("trails", ("kafkatrail.trails",)),
    ("runtime", ("kafkatrail.runtime",)),
    ("stages", ("kafkatrail.producers", "kafkatrail.processors", "kafkatrail.sinks", "kafkatrail.downstream")),
    ("entry points", ("kafkatrail.cli", "kafkatrail.demo", "kafkatrail.api", "kafkatrail.validate_logs",
                      "kafkatrail.stack", "kafkatrail.worker_process", "kafkatrail.node", "kafkatrail.node_status",
                      "kafkatrail.__main__")),
)


def package_folders() -> dict[str, Path]:
    """Package name -> source folder, from pyproject.toml's package-dir mapping."""
    config = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {name: REPOSITORY / folder for name, folder in config["package-dir"].items()}


def module_files() -> dict[str, Path]:
    """Every kafkatrail module (dotted name) and its source file (.py or .pyx)."""
    folders = package_folders()
    modules: dict[str, Path] = {}
    for package, folder in folders.items():
        for path in sorted([*folder.glob("*.py"), *folder.glob("*.pyx")]):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            modules[name] = path
    for path in sorted((REPOSITORY / "kafkatrail").rglob("*.py")):
        relative = path.relative_to(REPOSITORY).with_suffix("")
        parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
        modules.setdefault(".".join(parts), path)
    return modules


def layer_of(module: str) -> int:
    """The index of `module`'s layer; the root package `kafkatrail` (just its version) is ground."""
    if module == "kafkatrail":
        return 1
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The kafkatrail modules `module` imports (resolved to the longest known module name)."""
    source = path.read_text()
    if path.suffix == ".pyx":  # Cython: only its plain Python import lines can name kafkatrail modules
        source = "\n".join(line for line in source.splitlines() if line.startswith(("import ", "from "))
                           and " cimport " not in line)
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name.startswith("kafkatrail") and name != module:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {module: imports_of(module, path, known) for module, path in files.items()}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
                  for module, targets in graph.items() for target in targets
                  if layer_of(target) > layer_of(module) and not module.startswith(target + "."))


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import circle once (Tarjan's strongly connected components of more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target in graph and target.startswith(node + "."):
                continue  # a package importing its own submodule in __init__ is not a circle
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


LAYER_CASES = {
    "the contract": ("kafkatrail.schemas.contract", 0),
    "run-time files": ("kafkatrail.deploy", 0),
    "settings": ("kafkatrail.core.settings", 1),
    "the root package": ("kafkatrail", 1),
    "a sink": ("kafkatrail.sinks.s3", 4),
    "the CLI": ("kafkatrail.cli", 5),
    "the local stack": ("kafkatrail.stack.kafka_broker", 5),
}


@pytest.mark.parametrize(("module", "layer"), LAYER_CASES.values(), ids=LAYER_CASES.keys())
def test_each_module_has_its_layer(module: str, layer: int) -> None:
    assert layer_of(module) == layer


def test_the_rules_catch_an_upward_import_and_a_circle() -> None:
    graph = {"kafkatrail.core.settings": {"kafkatrail.sinks.s3"}, "kafkatrail.sinks.s3": {"kafkatrail.core.settings"}}
    assert upward_imports(graph) == ["kafkatrail.core.settings (ground) imports kafkatrail.sinks.s3 (stages)"]
    assert circles(graph) == [["kafkatrail.core.settings", "kafkatrail.sinks.s3"]]


def test_no_module_imports_from_a_layer_above_it() -> None:
    graph = import_graph()
    assert len(graph) > 50, "every module of the package was found"
    upward = upward_imports(graph)
    print(f"\n{len(graph)} modules, {sum(map(len, graph.values()))} imports, {len(upward)} upward")
    assert not upward, "\n".join(upward)


def test_there_is_no_import_circle() -> None:
    found = circles(import_graph())
    print(f"\n{len(found)} import circles")
    assert not found, "\n".join(" <-> ".join(circle) for circle in found)
