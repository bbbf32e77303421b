"""The package's folders show its roles (README, "The helper package"): lesson scaffolding at the
top, small; the toolkit with a public API; process workers; checks (the repository's own tooling
lives in tools/, outside the package). No import cycles between modules, no toolkit module imports
another's private name, and no notebook imports a private name or a maintenance tool."""

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "labs_utils"
SCAFFOLDING = [
    "__init__.py",
    "models.py",
    "data.py",
    "training.py",
    "plots.py",
    "capstone.py",
    "midepoch.py",
]


def test_the_top_level_holds_only_small_lesson_scaffolding():
    top = sorted(p.name for p in PKG.glob("*.py"))
    assert top == sorted([*SCAFFOLDING, "__main__.py"]), top
    lines = sum(len((PKG / name).read_text().splitlines()) for name in SCAFFOLDING)
    assert lines <= 650, (
        f"lesson scaffolding has grown to {lines} lines; move tools to labs_utils/toolkit"
    )
    assert {p.name for p in PKG.iterdir() if p.is_dir() and p.name != "__pycache__"} == {
        "toolkit",
        "workers",
        "checks",
    }


def test_the_toolkit_has_a_public_api():
    import labs_utils.toolkit as toolkit

    for name in toolkit.__all__:
        assert hasattr(toolkit, name), name
        assert not name.startswith("_")


def _local_imports(path: Path) -> set[str]:
    """Modules of labs_utils that `path` imports (at any depth in the file), as dotted names."""
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    package = (
        module.rsplit(".", 1)[0] if path.name != "__init__.py" else module.removesuffix(".__init__")
    )
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.startswith("labs_utils"):
                # `from . import formats` imports the submodule, not the package's __init__
                if node.module or not node.level:
                    out.add(target)
                out.update(f"{target}.{a.name}" for a in node.names)
    return out


def test_no_import_cycles():
    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for p in PKG.rglob("*.py")
    }
    graph = {
        m: {t for t in _local_imports(p) if t in modules and t != m} for m, p in modules.items()
    }

    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    for m in graph:
        # a package's __init__ may re-export its own submodules
        cycle = {
            n
            for n in reach(m)
            if m in reach(n) and not (n.startswith(m + ".") or m.startswith(n + "."))
        }
        assert not cycle, f"{m} is in an import cycle with {sorted(cycle)}"


def test_no_toolkit_module_imports_a_private_name_of_another():
    for path in sorted((PKG / "toolkit").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (
                node.level or "labs_utils" in (node.module or "")
            ):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"toolkit/{path.name} imports {private} from {node.module}"


@pytest.mark.parametrize(
    "notebook",
    sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")),
    ids=lambda p: p.name[:2],
)
def test_notebooks_import_only_public_names(notebook):
    cells = json.loads(notebook.read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    for m in re.finditer(
        r"^\s*from (labs_utils[\w.]*) import \(?([^)\n]*(?:\n[^)\n]*)*?)\)?$",
        code,
        re.M,
    ):
        module, names = m.group(1), m.group(2)
        assert "._" not in module and ".maintenance" not in module, (
            f"{notebook.name} imports {module}"
        )
        for name in re.findall(r"\b\w+\b", names.replace(" as ", " ")):
            assert not name.startswith("_"), (
                f"{notebook.name} imports the private name {name} from {module}"
            )
