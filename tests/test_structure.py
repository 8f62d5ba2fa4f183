"""The package's import graph, read from the source with ast: no cycle, one-way data path.

Every import counts, wherever it is: at module level, inside a function (a lazy import)
or under ``if TYPE_CHECKING:``, since each is a dependency a reader has to follow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import fashn_async

PACKAGE = Path(fashn_async.__file__).parent

#: The data path of a try-on, in order: request -> limiter -> http -> poller -> results
#: -> batch stream -> caller. Within a stage the order counts too: a module may import
#: only modules listed before it (or its own package), so the whole list is one import
#: order a reader can follow top to bottom. Packages list their submodules, then the
#: package itself (its ``__init__``); ``""`` is ``fashn_async/__init__.py``.
STAGES: list[tuple[str, list[str]]] = [
    (
        "foundation",
        [
            "_names",
            "_answers",
            "_redact",
            "_version",
            "_window",
            "_atomic",
            "_shield",
            "errors",
            "_validators",
            "_error_map",
        ],
    ),
    (
        "request",
        [
            "_urls",
            "_sources",
            "_structure",
            "_images",
            "_models",
            "_coerce",
            "_prepare",
            "_payload",
        ],
    ),
    (
        "limiter",
        [
            "_limits",
            "_inflight",
            "_calls",
            "_coordination._scripts",
            "_coordination._probation",
            "_coordination._link",
            "_coordination._window",
            "_coordination._leases",
            "_coordination._coordinator",
            "_coordination._config",
            "_coordination",
        ],
    ),
    ("http", ["_retry", "_tls", "_wire", "_decisions", "_http"]),
    ("submitter", ["_submitter"]),
    (
        "poller",
        [
            "_polling",
            "_turnbull",
            "_surprise",
            "_shift",
            "_survival",
            "_plan",
            "_poller",
            "_engine",
        ],
    ),
    ("results", ["_outputs", "_results"]),
    ("batch", ["_events", "_stream", "_batch_item", "_batch_run", "_batch"]),
    (
        "caller",
        [
            "_emulator_clock",
            "_options",
            "_base_client",
            "_client",
            "",
            "bulk._records",
            "bulk._identity",
            "bulk._rows",
            "bulk._words",
            "bulk._cells",
            "bulk._catalog",
            "bulk._edits",
            "bulk._folder",
            "bulk._rescue",
            "bulk._opening",
            "bulk._journal",
            "bulk._manifest",
            "bulk._outcome",
            "bulk._pacing",
            "bulk._sample",
            "bulk._thumbs",
            "bulk._report",
            "bulk._progress",
            "bulk._reconcile",
            "bulk._writes",
            "bulk._answers",
            "bulk._downloads",
            "bulk._job",
            "bulk._signals",
            "bulk._command",
            "bulk",
            "_cli_params",
            "_cli_run",
            "cli",
            "__main__",
        ],
    ),
]
#: Every entry of STAGES, in order.
ORDER: list[str] = [entry for _, entries in STAGES for entry in entries]

#: The emulator is a second, independent reading of the API: it may import only pure data.
EMULATOR_MAY_IMPORT = {"fashn_async._names"}
#: ...except where it hands a client to its user: ``emu.client()`` builds one from the public
#: surface (lazily, never to answer a request), ``client_timing`` its options (refusing a
#: bad time scale with the client's ConfigurationError), and the pytest plugin's fixtures.
CLIENT_FACTORIES = {
    "fashn_async.testing._emulator": {
        "fashn_async",
        "fashn_async._emulator_clock",
        "fashn_async.errors",
    },
}


def module_name(path: Path) -> str:
    """``fashn_async/_coordination/_link.py`` -> ``fashn_async._coordination._link``."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Each module of the package -> the modules of the package it imports."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.add(full if full in modules else base)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def entry_of(module: str) -> str:
    """The entry of ORDER that ``module`` is: itself, or the package that holds it."""
    relative = module.removeprefix("fashn_async").removeprefix(".")
    matches = [e for e in ORDER if relative == e or (e and relative.startswith(f"{e}."))]
    if not matches:
        raise AssertionError(
            f"{module} is in no stage of STAGES: add it where the data path has it"
        )
    return max(matches, key=len)


def stage_of(module: str) -> int:
    """The index in STAGES of the stage ``module`` belongs to."""
    entry = entry_of(module)
    return next(index for index, (_, names) in enumerate(STAGES) if entry in names)


def order_of(module: str) -> int:
    """The position of ``module``'s entry in ORDER."""
    return ORDER.index(entry_of(module))


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a list of modules, or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)) is not None:
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_the_graph_reader_sees_every_kind_of_import() -> None:
    """The reader finds lazy, TYPE_CHECKING and relative imports (else the checks are blind)."""
    graph = import_graph()
    assert "fashn_async._coordination._coordinator" in graph["fashn_async._coordination._config"]
    assert "fashn_async._coordination._coordinator" in graph["fashn_async._base_client"]
    assert "fashn_async.testing._config" in graph["fashn_async.testing"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle() -> None:
    """No module of fashn_async imports, however indirectly, a module that imports it."""
    assert find_cycle(import_graph()) is None


def test_data_path_is_one_way() -> None:
    """No module imports a later stage of the data path (request ... caller) than its own."""
    backwards = [
        f"{module} ({STAGES[stage_of(module)][0]}) imports {target} ({STAGES[stage_of(target)][0]})"
        for module, targets in import_graph().items()
        if not module.startswith("fashn_async.testing")
        for target in targets
        if not target.startswith("fashn_async.testing") and stage_of(target) > stage_of(module)
    ]
    assert backwards == []


def test_imports_follow_the_listed_order_within_each_stage() -> None:
    """Within a stage too, a module imports only modules listed before it (or its package)."""
    backwards = [
        f"{module} imports {target}, listed after it"
        for module, targets in import_graph().items()
        if not module.startswith("fashn_async.testing")
        for target in targets
        if not target.startswith("fashn_async.testing")
        and order_of(target) >= order_of(module)
        and not module.startswith(f"{target}.")  # its own package
        and entry_of(target) != entry_of(module)  # inside one listed package
    ]
    assert backwards == []


def test_every_module_has_one_entry() -> None:
    """STAGES lists each entry once, and every module of the package belongs to an entry."""
    assert len(ORDER) == len(set(ORDER))
    for module in import_graph():
        if not module.startswith("fashn_async.testing"):
            entry_of(module)


def test_the_emulator_imports_nothing_of_the_client() -> None:
    """fashn_async.testing's emulator imports only pure data of the client package."""
    graph = import_graph()
    leaks = {
        module: targets - EMULATOR_MAY_IMPORT
        for module, targets in graph.items()
        if module.startswith("fashn_async.testing") and module != "fashn_async.testing.plugin"
        for targets in [
            {t for t in targets if not t.startswith("fashn_async.testing")}
            - CLIENT_FACTORIES.get(module, set())
        ]
        if targets - EMULATOR_MAY_IMPORT
    }
    assert leaks == {}


def test_a_module_exports_only_what_it_defines() -> None:
    """No private module re-exports another's names in ``__all__`` (one place to import
    each from); the packages' ``__init__`` gather theirs, as httpx's does."""
    borrowed = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text(), str(path))
        imported = {
            alias.asname or alias.name
            for node in tree.body
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        }
        for node in tree.body:
            if (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
                and isinstance(node.value, ast.List | ast.Tuple)
            ):
                names = {e.value for e in node.value.elts if isinstance(e, ast.Constant)}
                borrowed += [f"{module_name(path)}.{n}" for n in sorted(names & imported)]
    assert borrowed == []


def test_no_module_is_much_over_400_lines() -> None:
    """Every module stays readable at a glance: at most 420 lines (the rule is ~400)."""
    long = {
        module_name(path): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 420
    }
    assert long == {}
