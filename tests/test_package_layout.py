"""The package's layout, from the code's own imports: stages import only the stages before them, no
module imports itself back through others, no module outgrows ~400 lines, and the public names that
`musicid/__init__.py` documents resolve."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import musicid

PACKAGE = Path(musicid.__file__).parent
# the stages, in pipeline order: a module may import its own stage and the ones before it
STAGES = ["", "io", "features", "collection", "model", "index", "recognize", "build", "evaluation", "serve", "cli"]
FOUNDATION = {"errors", "atomic", "keys", "progress", "choices", "vectors"}  # stage "": what every stage may import
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[str, int]]:
    """(module imported, line) for every import of musicid in the file, lazy and TYPE_CHECKING ones
    included; `from pkg import name` counts as importing pkg.name where that is a module."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "musicid"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "musicid":
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                is_module = (PACKAGE.parent / sub.replace(".", "/")).with_suffix(".py").exists() or \
                    (PACKAGE.parent / sub.replace(".", "/") / "__init__.py").exists()
                found.append((sub if is_module else target, node.lineno))
    return found


def stage_of(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return len(STAGES)  # musicid itself: the public names, above every stage
    if len(parts) == 2 and parts[1] in FOUNDATION:
        return 0
    if parts[1] == "__main__":
        return len(STAGES)
    assert parts[1] in STAGES, f"{module} lies in no stage: add it to one (musicid/__init__.py lists them)"
    return STAGES.index(parts[1])


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))
GRAPH = {module_name(p): imports_of(p) for p in MODULES}


def test_every_module_lies_in_a_stage_and_imports_only_down():
    upward = []
    for source, targets in GRAPH.items():
        for target, line in targets:
            if target == "musicid" and source != "musicid":
                continue  # `from musicid import __version__`: the version, not the public names
            if stage_of(target) > stage_of(source):
                upward.append(f"{source}:{line} imports {target}")
    assert not upward, "imports against the pipeline's direction:\n" + "\n".join(upward)


def test_no_import_cycles():
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t, _ in GRAPH.get(m, []):
            if t == m or t not in GRAPH or t == "musicid":
                continue
            if state.get(t) == 1:
                cycles.append(" -> ".join(path[path.index(t):] + [t]))
            elif t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in GRAPH:
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_module_size(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.name} has {n} lines: split it by idea"


def test_every_stage_says_what_it_holds_and_may_import():
    for stage in STAGES[1:]:
        doc = ast.get_docstring(ast.parse((PACKAGE / stage / "__init__.py").read_text()))
        assert doc and "import" in doc.lower(), f"musicid/{stage}/__init__.py: say what the stage holds and imports"


def test_the_public_names_resolve():
    assert {"build_index", "query", "QueryEngine", "add_tracks", "load_music"} <= set(musicid.__all__)
    for name in musicid.__all__:
        assert getattr(musicid, name) is not None
    from musicid.recognize.query import QueryEngine

    assert musicid.QueryEngine is QueryEngine
    with pytest.raises(AttributeError):
        musicid.no_such_name  # noqa: B018


def test_import_musicid_stays_light():
    """`import musicid` (and so `musicid --help`) loads neither torch, FAISS nor numpy: the public
    names are loaded on first use."""
    code = "import sys, musicid; print(sorted({'torch', 'faiss', 'numpy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert "build_index" in dir(musicid)  # the lazily loaded names are listed
