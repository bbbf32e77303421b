"""Maintenance tools for the workbook's notebooks (used by the Makefile).

    python -m labs_utils.notebook_tools sanitize notebooks/*.ipynb

``sanitize`` rewrites the stored tracebacks of error outputs so they carry no machine-specific
paths (``/home/me/.venv/lib/python3.11/site-packages/torch/...`` becomes
``.../site-packages/torch/...``). nbval does not compare tracebacks, but GitHub shows them, and
the workbook never shows one machine's paths.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

__all__ = ["sanitize_text", "sanitize_notebook", "main"]

_SITE = re.compile(r"(?:[A-Za-z]:)?[/\\][^\s\"'<>:]*?[/\\](site-packages|dist-packages)[/\\]")
_STDLIB = re.compile(r"(?:[A-Za-z]:)?[/\\][^\s\"'<>:]*?[/\\](lib[/\\]python3\.\d+)[/\\]")
_ADDR = re.compile(r" at 0x[0-9a-fA-F]{6,}")


def sanitize_text(text: str, root: str | None = None) -> str:
    """Replace absolute paths of installed packages, the stdlib and ``root`` with neutral ones."""
    text = _SITE.sub(lambda m: f".../{m.group(1)}/", text)
    text = _STDLIB.sub(lambda m: f".../{m.group(1)}/", text)
    if root:
        text = text.replace(root.rstrip("/") + "/", "")
    return _ADDR.sub(" at 0x...", text)


def sanitize_notebook(path: str | Path) -> bool:
    """Sanitize the tracebacks of one notebook in place; returns True when it changed."""
    path = Path(path)
    raw = path.read_text(encoding="utf-8")
    nb = json.loads(raw)
    root = str(Path.cwd().resolve())
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                out["traceback"] = [sanitize_text(line, root) for line in out.get("traceback", [])]
    new = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    if new != raw:
        path.write_text(new, encoding="utf-8")
        return True
    return False


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[0] != "sanitize":
        print("usage: python -m labs_utils.notebook_tools sanitize NOTEBOOK.ipynb [...]", file=sys.stderr)
        return 2
    for name in argv[1:]:
        p = Path(name)
        if not p.is_file():
            print(f"{name}: no such notebook", file=sys.stderr)
            return 2
        sanitize_notebook(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
