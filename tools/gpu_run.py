"""``make test-gpu``: run every notebook with the GPU visible, and write ``build/gpu-report.md``.

    python -m tools.gpu_run [--jobs N] [--cell-timeout S] [notebooks/NN_x.ipynb ...]

``make test`` hides the GPU (the stored outputs come from a CPU run); this is the other half.
Each notebook runs top to bottom in a fresh kernel of this environment, every cell even after an
error, and its outputs are **not** compared with the stored ones (a GPU changes device names,
scales, timings). The executed copies go to ``build/gpu-run/``; ``notebooks/`` is not touched.

A notebook fails when a cell raised without the ``raises-exception`` tag; when a tagged cell did
not raise; when a cell tagged ``raises-without-cuda`` (the error only a CPU host gives, such as
``torch.load`` of a GPU file without ``map_location``) raised although CUDA is there; and when any
output line starts with ``skipped:``, the workbook's mark of a GPU cell that did not run. It also
remakes the CUDA fixtures of ``data/`` with a real ``torch.save`` from the GPU and compares them.

Exit status: 0 pass; 1 something failed (the report says what); 2 bad command line; 3 no CUDA
here, nothing was run (one line on stderr; ``--allow-cpu`` runs anyway, to test this tool, and
still exits 3). The report is rewritten after each notebook, so a run cut short leaves one.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "build" / "gpu-report.md"
RUN_DIR = ROOT / "build" / "gpu-run"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_CUDA = 0, 1, 2, 3
SKIP_LINE = re.compile(r"^\s*skipped\s*:", re.IGNORECASE)
GPU_TEST = re.compile(r"\bcuda\s*\.\s*(is_available|device_count)\s*\(")
FIXTURES = {"cuda:0": "gpu_weights_cuda0.pth", "cuda:1": "gpu_weights_cuda1.pth"}


def no_cuda_reason(environ=None) -> str | None:
    """Why this machine cannot run the GPU cells, in one line; ``None`` when it can.

    A ``CUDA_VISIBLE_DEVICES`` that hides every GPU is answered without importing torch."""
    visible = (os.environ if environ is None else environ).get("CUDA_VISIBLE_DEVICES")
    if visible is not None and (not visible.strip() or visible.strip().startswith("-1")):
        return (
            f"CUDA_VISIBLE_DEVICES={visible.strip()!r} hides every GPU "
            "(make test sets it; unset it for make test-gpu)"
        )
    import torch

    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build (reinstall torch==2.13.0 from PyPI on a GPU machine)"
    if not torch.cuda.is_available():
        return (
            f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU: "
            "torch.cuda.is_available() is False (is the NVIDIA driver loaded? try nvidia-smi)"
        )
    return None


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else (value or "")


def output_lines(cell) -> list[str]:
    """What a cell printed: its streams and the ``text/plain`` of its results."""
    lines = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            lines += _text(out.get("text")).splitlines()
        elif out.get("output_type") in ("execute_result", "display_data"):
            lines += _text(out.get("data", {}).get("text/plain")).splitlines()
    return lines


def cell_problems(cell, cuda: bool) -> list[str]:
    """What is wrong with one executed code cell (``[]`` when it is fine)."""
    tags = cell.get("metadata", {}).get("tags", [])
    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    error = None
    if errors:
        first = (errors[0].get("evalue") or "").strip().splitlines()
        error = f"{errors[0].get('ename', 'Error')}: {first[0] if first else ''}"[:300]
    problems = []
    if cuda and "raises-without-cuda" in tags:
        if error:
            problems.append(f"tagged raises-without-cuda, but raised with CUDA too: {error}")
    elif "raises-exception" in tags:
        if not error and cell.get("execution_count") is not None:
            problems.append("tagged raises-exception but did not raise")
    elif error:
        problems.append(f"raised {error}")
    if cuda:
        problems += [
            f"printed {line.strip()[:200]!r} although CUDA is available"
            for line in output_lines(cell)
            if SKIP_LINE.match(line)
        ]
    return problems


@dataclass
class NotebookResult:
    name: str
    status: str = "not finished"  # pass, fail, not finished
    problems: list[str] = field(default_factory=list)
    gpu_cells: dict[int, list[str]] = field(default_factory=dict)  # cell -> what it printed
    seconds: float | None = None


def assess(nb, name: str, cuda: bool, fatal: str | None = None, seconds=None):
    """Judge an executed notebook (nbformat JSON). Cells that never ran are judged by ``fatal``."""
    result = NotebookResult(name, seconds=seconds)
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code" or cell.get("execution_count") is None:
            continue
        result.problems += [f"cell {i}: {p}" for p in cell_problems(cell, cuda)]
        if GPU_TEST.search(_text(cell.get("source"))):
            result.gpu_cells[i] = output_lines(cell)[:12]
    if fatal:
        result.problems.append(fatal)
    result.status = "fail" if result.problems else "pass"
    return result


def run_notebook(path: Path, cuda: bool, cell_timeout: int) -> NotebookResult:
    """Execute ``path`` in a fresh ``python3`` kernel (working folder: its own) and judge it."""
    import nbformat
    from nbconvert.preprocessors import ExecutePreprocessor

    start = time.monotonic()
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as e:  # noqa: BLE001 - an unreadable notebook is a failure to report
        return assess({}, path.stem, cuda, f"could not read {path.name}: {e}")
    for cell in nb.cells:  # the stored CPU outputs must not pass for this run's
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    fatal = None
    try:
        ExecutePreprocessor(
            timeout=cell_timeout, kernel_name="python3", allow_errors=True
        ).preprocess(nb, {"metadata": {"path": str(path.parent)}})
    except Exception as e:  # noqa: BLE001 - a timeout or a dead kernel stops the run
        fatal = f"the run stopped: {type(e).__name__}: {str(e).strip()[:200]}"
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, RUN_DIR / path.name)
    return assess(nb, path.stem, cuda, fatal, round(time.monotonic() - start, 1))


def check_fixtures(data_dir: Path = ROOT / "data") -> list[tuple[str, bool, str]]:
    """Remake each CUDA fixture with ``torch.save`` on the GPU (``SimpleModel`` after
    ``manual_seed(0)``, as ``data/make_cuda_checkpoint.py`` does) and compare storage tags and
    tensors. A ``cuda:N`` this machine lacks is not remade; the shipped file's tag is checked.
    Returns ``(file, ok, what was seen)`` per fixture."""
    import torch

    from labs_utils.models import SimpleModel

    def tags(path):
        seen = set()
        torch.load(path, map_location=lambda s, loc: seen.add(loc) or s, weights_only=True)
        return seen

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for tag, name in FIXTURES.items():
            shipped = data_dir / name
            if not shipped.is_file():
                results.append((name, False, "missing (python data/make_cuda_checkpoint.py)"))
                continue
            if int(tag.split(":")[1]) >= torch.cuda.device_count():
                ok = tags(shipped) == {tag}
                results.append((name, ok, f"tags {sorted(tags(shipped))}; not remade: no {tag}"))
                continue
            torch.manual_seed(0)
            remade = Path(tmp) / name
            torch.save(SimpleModel().to(tag).state_dict(), remade)
            a, b = (torch.load(p, map_location="cpu", weights_only=True) for p in (shipped, remade))
            same = list(a) == list(b) and all(
                a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a
            )
            ok = same and tags(shipped) == tags(remade) == {tag}
            results.append((name, ok, f"tags {sorted(tags(remade))}, same tensors: {same}"))
    return results


def render_report(results, env: dict, fixtures, cuda: bool = True) -> str:
    """The markdown of ``build/gpu-report.md`` (no file access)."""
    failed = [r for r in results if r.status == "fail"]
    unfinished = [r for r in results if r.status == "not finished"]
    if not cuda:
        verdict = "NO CUDA: a CPU dry run of the tool itself; it proves nothing about the GPU"
    elif failed or (fixtures is not None and not all(ok for _, ok, _ in fixtures)):
        verdict = "FAIL"
    else:
        verdict = "IN PROGRESS" if unfinished else "PASS"
    lines = [
        "# GPU run of the workbook (`make test-gpu`)",
        "",
        f"**Result: {verdict}.** {len(results) - len(failed) - len(unfinished)} of "
        f"{len(results)} notebooks passed, {len(failed)} failed, {len(unfinished)} not finished.",
        "",
        *(f"- {k}: {v}" for k, v in env.items()),
        "",
        "| Notebook | Result | GPU cells | Seconds |",
        "|---|---|---|---|",
        *(f"| {r.name} | {r.status} | {len(r.gpu_cells)} | {r.seconds or ''} |" for r in results),
    ]
    if failed:
        lines += ["", "## Problems", ""]
        lines += [f"- {r.name}, {p}".replace("\n", " ") for r in failed for p in r.problems]
    lines += ["", "## CUDA fixtures in data/", ""]
    if fixtures is None:
        lines.append("- not checked (no CUDA, or --no-fixtures)")
    lines += [
        f"- `{f}`: {'match' if ok else '**MISMATCH**'}; {seen}" for f, ok, seen in fixtures or []
    ]
    shown = [(r, i, out) for r in results for i, out in sorted(r.gpu_cells.items())]
    if shown:
        lines += ["", "## What the GPU cells printed", ""]
        for r, i, out in shown:
            lines += [
                f"{r.name}, cell {i}:",
                "",
                "~~~text",
                *(out or ["(nothing)"]),
                "~~~",
                "",
            ]
    return "\n".join(lines).rstrip() + "\n"


def write_report(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def environment(cuda: bool) -> dict[str, str]:
    import platform

    import torch

    env = {
        "torch": torch.__version__,
        "CUDA": str(torch.version.cuda),
        "Python": platform.python_version(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset"),
    }
    if cuda:
        names = {torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())}
        env["device"] = f"{', '.join(sorted(names))} ({torch.cuda.device_count()} visible)"
    return env


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.gpu_run", description=__doc__.split("\n")[0])
    p.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/[0-9][0-9]_*.ipynb")
    p.add_argument("--jobs", type=int, default=4, help="notebooks at a time (default 4)")
    p.add_argument("--cell-timeout", type=int, default=300, help="seconds per cell (default 300)")
    p.add_argument("--report", type=Path, default=REPORT)
    p.add_argument("--no-fixtures", action="store_true", help="skip the data/ fixture check")
    p.add_argument("--allow-cpu", action="store_true", help="run without CUDA (tests the tool)")
    args = p.parse_args(argv)
    if args.jobs < 1 or args.cell_timeout < 1:
        print("test-gpu: --jobs and --cell-timeout must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    reason = no_cuda_reason()
    if reason and not args.allow_cpu:
        print(
            f"test-gpu: no CUDA device visible, nothing was run: {reason}",
            file=sys.stderr,
        )
        return EXIT_NO_CUDA
    cuda = reason is None
    paths = [p.resolve() for p in args.notebooks] or sorted(
        (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")
    )
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"test-gpu: no such notebook: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    for name, value in (("OMP_NUM_THREADS", "1"), ("PYTHONHASHSEED", "0")):
        os.environ.setdefault(name, value)
    env = environment(cuda)
    fixtures = check_fixtures() if cuda and not args.no_fixtures else None
    results = {path: NotebookResult(path.stem) for path in paths}

    def report():
        write_report(args.report, render_report(list(results.values()), env, fixtures, cuda))

    report()
    with ThreadPoolExecutor(args.jobs) as pool:  # each notebook has its own kernel process
        running = {pool.submit(run_notebook, path, cuda, args.cell_timeout): path for path in paths}
        for done in as_completed(running):
            r = results[running[done]] = done.result()
            print(f"finished {r.name}: {r.status}", flush=True)
            report()
    ok = all(r.status == "pass" for r in results.values()) and all(
        ok for _, ok, _ in fixtures or []
    )
    print(
        f"test-gpu: {'PASS' if ok else 'FAIL'}; report in {os.path.relpath(args.report)}",
        flush=True,
    )
    if not cuda:
        return EXIT_NO_CUDA
    return EXIT_OK if ok else EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
