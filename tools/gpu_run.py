"""``make test-gpu``: execute every notebook top to bottom with the GPU visible, and report.

    python -m tools.gpu_run             # every notebooks/NN_*.ipynb
    python -m tools.gpu_run notebooks/06_devices_and_map_location.ipynb
    python -m tools.gpu_run --jobs 6 --cell-timeout 300

``make test`` hides any GPU on purpose (the stored outputs come from a CPU run), so on its own it
never runs a GPU branch. This tool is the other half. It runs each notebook in a fresh
``python3`` kernel of this environment (nbconvert's ``ExecutePreprocessor``, working folder
``notebooks/``, ``OMP_NUM_THREADS=1`` and ``PYTHONHASHSEED=0`` unless already set), runs every
cell even after an error, and **does not compare outputs** with the stored ones (a GPU changes
device names, scales, timings). It leaves the notebooks in ``notebooks/`` untouched; the executed
copies go to ``build/gpu-run/`` and the report to ``build/gpu-report.md``. It also remakes the
CUDA fixtures of ``data/`` on the real GPU and compares them with the shipped ones.

Rules (all read from the executed notebook; cell numbers are 0-based positions in the file,
the same numbers nbval prints)
----------------------------------------------------------------------------------------------
* **GPU branch.** A code cell *has a GPU branch* when its source holds an ``if`` statement, or
  a conditional expression (``x if cond else y``), whose condition calls
  ``torch.cuda.is_available()`` or ``torch.cuda.device_count()`` (any spelling that ends in
  ``cuda.is_available`` / ``cuda.device_count``, so ``from torch import cuda`` works too). The
  ``if`` form is reported as a branch, the expression form as a *device choice* (``device =
  torch.device("cuda" if torch.cuda.is_available() else "cpu")``). The rule is per cell and
  syntactic: a flag computed in an earlier cell (``HAS_GPU = ...``, then ``if HAS_GPU:``) is
  not seen, so keep the CUDA test in the cell that branches. IPython magics (``%...``,
  ``!...``) are ignored; a cell that still does not parse is matched with a regular expression.
* **Skip line.** An output line (stdout, stderr, or the text of a result) that starts with
  ``skipped:`` (any case, leading spaces allowed). This is the workbook's convention for "this
  cell needs a GPU": ``print("skipped: no CUDA (...)")``. A part that needs *more* GPUs than
  the machine has must say what it ran instead in other words (``"one GPU: ..."``), because on
  a CUDA machine every skip line is a failure.
* **GPU cells run.** The GPU-branch cells that finished without an error and without a skip
  line on a machine where CUDA is available. (Which arm of the ``if`` ran is not traced; a
  cell that branches on ``device_count() >= 2`` counts as run on one GPU if it printed no skip
  line.)
* **A notebook fails** when a cell raised and is not tagged ``raises-exception`` (a failed
  ``assert`` is such an error); when a cell tagged ``raises-exception`` did not raise (as in
  nbval); when any cell printed a skip line although CUDA is available (the rule applies to
  every cell, not only those with a recognised branch, so a CUDA test hidden in a helper is
  caught too); when a cell timed out, the kernel died, or the notebook could not be read.
* **An error that only a CPU host gives.** A cell that shows the error a machine *without*
  CUDA raises (``torch.load`` of a GPU checkpoint without ``map_location``) carries
  ``raises-exception`` for nbval on the CPU and, in addition, ``raises-without-cuda``: with
  CUDA it must then run *without* an error (the file simply loads onto the GPU), and an error
  there is the failure.

Exit status: ``0`` every notebook passed and the fixtures match; ``1`` something failed (the
report says what); ``2`` bad command line; ``3`` no CUDA here, nothing was run. Without CUDA
the tool stops at once with one line on stderr, before importing anything heavy when
``CUDA_VISIBLE_DEVICES`` already hides every GPU (as ``make test`` does). ``--allow-cpu``
runs anyway, to test this tool itself on a CPU: skip lines are then expected, the report says
that it proves nothing about GPUs, and the exit status is still ``3``.

The report is rewritten after each notebook finishes, so a run cut short (a lease that ends,
``timeout``) still leaves what was done; SIGTERM stops the run and marks the rest unfinished.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
DATA = ROOT / "data"
REPORT = ROOT / "build" / "gpu-report.md"
RUN_DIR = ROOT / "build" / "gpu-run"

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_CUDA = 0, 1, 2, 3

SKIP_LINE = re.compile(r"^\s*skipped\s*:", re.IGNORECASE)
_GPU_CALLS = ("cuda.is_available", "cuda.device_count")
_GPU_IF_REGEX = re.compile(
    r"\bif\b[^\n]*\bcuda\s*\.\s*(is_available|device_count)\s*\("
)
_MAGIC = re.compile(r"^\s*(%|!)")
_KEEP_LINES = 12  # lines of a GPU cell's output kept in the report
_LINE_CHARS = 200

FIXTURES = {"cuda:0": "gpu_weights_cuda0.pth", "cuda:1": "gpu_weights_cuda1.pth"}


# --------------------------------------------------------------------------------------------
# Refusing without CUDA
# --------------------------------------------------------------------------------------------
def no_cuda_reason(environ: Mapping[str, str] | None = None) -> str | None:
    """Why this machine cannot run the GPU branches, in one line; ``None`` when it can.

    ``CUDA_VISIBLE_DEVICES`` set to nothing (or starting with ``-1``) hides every GPU, and is
    answered without importing torch. Otherwise torch decides.
    """
    environ = os.environ if environ is None else environ
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and (
        visible.strip() == "" or visible.strip().startswith("-1")
    ):
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


def refusal_line(reason: str) -> str:
    return f"test-gpu: no CUDA device visible, nothing was run: {reason}"


# --------------------------------------------------------------------------------------------
# Reading cells: GPU branches, skip lines, errors
# --------------------------------------------------------------------------------------------
def _source(cell: Mapping[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _tests_cuda(test: ast.AST) -> bool:
    return any(
        isinstance(n, ast.Call) and _dotted(n.func).endswith(_GPU_CALLS)
        for n in ast.walk(test)
    )


def gpu_branch_kind(source: str) -> str | None:
    """``"branch"`` (an ``if`` on CUDA), ``"device choice"`` (``a if cuda... else b``) or ``None``."""
    code = "\n".join("" if _MAGIC.match(line) else line for line in source.splitlines())
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return "branch" if _GPU_IF_REGEX.search(code) else None
    kinds = {
        ("branch" if isinstance(n, ast.If) else "device choice")
        for n in ast.walk(tree)
        if isinstance(n, (ast.If, ast.IfExp)) and _tests_cuda(n.test)
    }
    if "branch" in kinds:
        return "branch"
    return "device choice" if kinds else None


def output_lines(
    cell: Mapping[str, Any],
    streams: Iterable[str] = ("stdout", "stderr"),
    *,
    results: bool = True,
) -> list[str]:
    """The text a cell showed: the named streams and (``results``) the ``text/plain`` of results."""
    lines: list[str] = []
    for out in cell.get("outputs", []):
        kind = out.get("output_type")
        if kind == "stream" and out.get("name") in streams:
            text = out.get("text", "")
        elif results and kind in ("execute_result", "display_data"):
            text = out.get("data", {}).get("text/plain", "")
        else:
            continue
        lines.extend(("".join(text) if isinstance(text, list) else text).splitlines())
    return lines


def skip_lines(cell: Mapping[str, Any]) -> list[str]:
    return [line.strip() for line in output_lines(cell) if SKIP_LINE.match(line)]


def cell_error(cell: Mapping[str, Any]) -> str | None:
    """``"Name: first line of the message"`` of the cell's error output, or ``None``."""
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            value = (out.get("evalue") or "").strip().splitlines()
            return f"{out.get('ename', 'Error')}: {value[0] if value else ''}".rstrip(
                ": "
            )[: _LINE_CHARS * 2]
    return None


def cell_problems(cell: Mapping[str, Any], cuda_available: bool) -> list[str]:
    """What is wrong with one executed code cell (an empty list when it is fine)."""
    tags = cell.get("metadata", {}).get("tags", [])
    error = cell_error(cell)
    problems = []
    if cuda_available and "raises-without-cuda" in tags:
        if error is not None:
            problems.append(
                f"tagged raises-without-cuda, but raised with CUDA too: {error}"
            )
    elif "raises-exception" in tags:
        if error is None and cell.get("execution_count") is not None:
            problems.append("tagged raises-exception but did not raise")
    elif error is not None:
        problems.append(f"raised {error}")
    if cuda_available:
        for line in skip_lines(cell):
            where = (
                "its GPU branch was not taken"
                if gpu_branch_kind(_source(cell))
                else "a skip line"
            )
            problems.append(
                f"{where} although CUDA is available: printed {line[:_LINE_CHARS]!r}"
            )
    return problems


# --------------------------------------------------------------------------------------------
# One notebook's result
# --------------------------------------------------------------------------------------------
@dataclass
class NotebookResult:
    """What a run of one notebook showed. ``status``: pass, fail, pending, not finished."""

    name: str
    status: str = "pending"
    gpu_cells: list[tuple[int, str]] = field(default_factory=list)  # (cell, kind)
    gpu_cells_run: list[int] = field(default_factory=list)
    # "cell N: ..." or a whole-notebook message
    problems: list[str] = field(default_factory=list)
    # what each GPU cell printed
    gpu_outputs: dict[int, list[str]] = field(default_factory=dict)
    # cells that wrote to stderr
    stderr: dict[int, list[str]] = field(default_factory=dict)
    seconds: float | None = None

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NotebookResult:
        data = dict(data)
        data["gpu_cells"] = [tuple(x) for x in data.get("gpu_cells", [])]
        for key in ("gpu_outputs", "stderr"):
            data[key] = {int(k): v for k, v in data.get(key, {}).items()}
        return cls(**data)


def _clip(lines: list[str]) -> list[str]:
    kept = [
        line[:_LINE_CHARS] + ("..." if len(line) > _LINE_CHARS else "")
        for line in lines[:_KEEP_LINES]
    ]
    if len(lines) > _KEEP_LINES:
        kept.append(f"... ({len(lines) - _KEEP_LINES} more lines)")
    return kept


def assess_notebook(
    nb: Mapping[str, Any],
    name: str,
    *,
    cuda_available: bool,
    fatal: str | None = None,
    seconds: float | None = None,
) -> NotebookResult:
    """Classify the cells of an executed notebook (``nb``: nbformat JSON as a dict or NotebookNode).

    Cells with no ``execution_count`` were not reached (the run stopped first); they are judged
    only through ``fatal``, the message of what stopped the run.
    """
    result = NotebookResult(name=name, seconds=seconds)
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        kind = gpu_branch_kind(_source(cell))
        ran = cell.get("execution_count") is not None
        problems = cell_problems(cell, cuda_available) if ran else []
        result.problems.extend(f"cell {index}: {p}" for p in problems)
        if kind:
            result.gpu_cells.append((index, kind))
            if ran:
                result.gpu_outputs[index] = _clip(output_lines(cell))
            if ran and cuda_available and not problems:
                result.gpu_cells_run.append(index)
        err = output_lines(cell, streams=("stderr",), results=False)
        if err:
            result.stderr[index] = _clip(err)
    if fatal:
        result.problems.append(fatal)
    result.status = "fail" if result.problems else "pass"
    return result


def static_gpu_cells(path: Path) -> list[tuple[int, str]]:
    """The GPU-branch cells of a notebook file, from its source alone (``[]`` if unreadable)."""
    try:
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError, AttributeError):
        return []
    found = [
        (i, gpu_branch_kind(_source(c)))
        for i, c in enumerate(cells)
        if c.get("cell_type") == "code"
    ]
    return [(i, kind) for i, kind in found if kind]


def run_notebook(
    path: Path, *, cuda_available: bool, cell_timeout: int, save_dir: Path | None
) -> NotebookResult:
    """Execute ``path`` in a fresh ``python3`` kernel (working folder: its own) and assess it."""
    import nbformat
    from nbconvert.preprocessors import ExecutePreprocessor

    name = path.stem
    start = time.monotonic()
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as e:  # noqa: BLE001 - any unreadable notebook is a failure to report
        return assess_notebook(
            {},
            name,
            cuda_available=cuda_available,
            fatal=f"could not read {path.name}: {type(e).__name__}: {e}",
        )
    for cell in nb.cells:  # stale CPU outputs must not be mistaken for this run's
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    fatal = None
    client = ExecutePreprocessor(
        timeout=cell_timeout,
        kernel_name="python3",
        allow_errors=True,
        record_timing=False,
    )
    try:
        client.preprocess(nb, {"metadata": {"path": str(path.parent)}})
    except Exception as e:  # noqa: BLE001 - timeouts, a dead kernel: the run stops, the report says why
        first = str(e).strip().splitlines()
        fatal = f"the run stopped: {type(e).__name__}: {first[0][:_LINE_CHARS] if first else ''}"
    seconds = round(time.monotonic() - start, 1)
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, save_dir / path.name)
    return assess_notebook(
        nb, name, cuda_available=cuda_available, fatal=fatal, seconds=seconds
    )


# --------------------------------------------------------------------------------------------
# The machine, and the CUDA fixtures in data/
# --------------------------------------------------------------------------------------------
def environment() -> dict[str, str]:
    """Device name(s), GPU count, torch / CUDA / cuDNN / NCCL versions (needs torch)."""
    import platform

    import torch

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": str(torch.version.cuda),
        "gpus": "0",
        "device": "none (no CUDA)",
    }
    if torch.cuda.is_available():
        names = [
            torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
        ]
        info["gpus"] = str(len(names))
        info["device"] = ", ".join(sorted(set(names)))
        major, minor = torch.cuda.get_device_capability(0)
        info["capability"] = f"{major}.{minor}"
        info["cudnn"] = str(torch.backends.cudnn.version())
        try:
            info["nccl"] = ".".join(str(x) for x in torch.cuda.nccl.version())
        except Exception:  # noqa: BLE001 - builds without NCCL
            info["nccl"] = "not built in"
    return info


@dataclass
class FixtureCheck:
    """One ``data/`` fixture compared with a file remade by ``torch.save`` on the real GPU."""

    file: str
    tag: str
    ok: bool
    lines: list[str] = field(default_factory=list)


def storage_tags(path: Path) -> set[str]:
    """The location tags of ``path``'s storages, read through a ``map_location`` callable."""
    import torch

    seen: set[str] = set()

    def record(storage, location):
        seen.add(location)
        return storage

    torch.load(path, map_location=record, weights_only=True)
    return seen


def _pickle_bytes(path: Path) -> bytes:
    with zipfile.ZipFile(path) as z:
        return z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))


def check_fixtures(data_dir: Path = DATA) -> list[FixtureCheck]:
    """Remake each CUDA fixture with a real ``torch.save`` from the GPU and compare.

    The weights are ``SimpleModel``'s right after ``torch.manual_seed(0)`` (as
    ``data/make_cuda_checkpoint.py`` makes them), moved to ``cuda:N``. A fixture passes when its
    storage tags and its tensors (keys, order, dtypes, values) equal the remade file's, and the
    shipped file loads onto ``cuda:N`` without ``map_location``. Whether ``data.pkl`` is
    byte-identical is reported, not required. A ``cuda:N`` this machine lacks is not remade; the
    shipped file's tag is still checked.
    """
    import torch

    from labs_utils.models import SimpleModel

    checks = []
    count = torch.cuda.device_count()
    with tempfile.TemporaryDirectory() as tmp:
        for tag, name in FIXTURES.items():
            shipped = data_dir / name
            if not shipped.is_file():
                checks.append(
                    FixtureCheck(
                        name,
                        tag,
                        False,
                        [f"missing: data/{name} (python data/make_cuda_checkpoint.py)"],
                    )
                )
                continue
            tags = storage_tags(shipped)
            lines = [f"storage tags in the shipped file: {sorted(tags)}"]
            index = int(tag.split(":")[1])
            if index >= count:
                lines.append(
                    f"not remade on a GPU: {tag} needs {index + 1} GPU{'s' if index else ''}, "
                    f"this machine has {count}"
                )
                checks.append(FixtureCheck(name, tag, tags == {tag}, lines))
                continue
            # no map_location: lands on the tag's device
            on_gpu = torch.load(shipped, weights_only=True)
            devices = sorted({str(v.device) for v in on_gpu.values()})
            lines.append(
                f"shipped file, torch.load without map_location: tensors on {devices}"
            )
            torch.manual_seed(0)
            model = SimpleModel().to(tag)
            remade = Path(tmp) / name
            torch.save(model.state_dict(), remade)
            new_tags = storage_tags(remade)
            a = torch.load(shipped, map_location="cpu", weights_only=True)
            b = torch.load(remade, map_location="cpu", weights_only=True)
            same = list(a) == list(b) and all(
                a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a
            )
            lines.append(
                f"remade with torch.save from {tag}: tags {sorted(new_tags)}, "
                f"same keys, dtypes and tensors: {same}"
            )
            lines.append(
                f"data.pkl byte-identical to the shipped file: {_pickle_bytes(remade) == _pickle_bytes(shipped)}"
            )
            ok = same and tags == new_tags == {tag} and devices == [tag]
            checks.append(FixtureCheck(name, tag, ok, lines))
    return checks


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------
def _cells(cells: list[tuple[int, str]]) -> str:
    if not cells:
        return "none"
    return ", ".join(
        f"{i}" + (" (device choice)" if kind == "device choice" else "")
        for i, kind in cells
    )


def _fence(lines: list[str]) -> list[str]:
    fence = "~~~" if any("```" in line for line in lines) else "```"
    return [fence + "text", *lines, fence]


def _result_cell(r: NotebookResult) -> str:
    if r.status == "fail":
        return (
            f"**FAIL** ({len(r.problems)} problem{'s' if len(r.problems) != 1 else ''})"
        )
    return r.status


def render_report(
    results: list[NotebookResult],
    env: Mapping[str, str],
    fixtures: list[FixtureCheck] | None,
    *,
    cuda_available: bool = True,
    finished: bool = True,
    jobs: int | None = None,
    cell_timeout: int | None = None,
) -> str:
    """The markdown of ``build/gpu-report.md`` (pure: no file access)."""
    failed = [r for r in results if r.status == "fail"]
    unfinished = [r for r in results if r.status in ("pending", "not finished")]
    fixtures_ok = fixtures is not None and all(f.ok for f in fixtures)
    if not cuda_available:
        verdict = "NO CUDA: a CPU dry run of the tool itself; it proves nothing about the GPU branches"
    elif (
        failed
        or (fixtures is not None and not fixtures_ok)
        or (finished and unfinished)
    ):
        verdict = "FAIL"
    elif not finished:
        verdict = "IN PROGRESS"
    else:
        verdict = "PASS"
    gpu_total = sum(len(r.gpu_cells) for r in results)
    run_total = sum(len(r.gpu_cells_run) for r in results)
    lines = [
        "# GPU run of the workbook (`make test-gpu`)",
        "",
        f"**Result: {verdict}.** {len(results) - len(failed) - len(unfinished)} of {len(results)} notebooks passed"
        + (f", {len(failed)} failed" if failed else "")
        + (f", {len(unfinished)} not finished" if unfinished else "")
        + f"; GPU cells run: {run_total} of {gpu_total}.",
        "",
        f"- Device: {env.get('device', '?')} ({env.get('gpus', '?')} GPU visible"
        + (f", compute capability {env['capability']}" if "capability" in env else "")
        + ")",
        f"- torch {env.get('torch', '?')}, CUDA {env.get('cuda', '?')}"
        + (f", cuDNN {env['cudnn']}" if "cudnn" in env else "")
        + (f", NCCL {env['nccl']}" if "nccl" in env else "")
        + f", Python {env.get('python', '?')}",
    ]
    if jobs is not None or cell_timeout is not None:
        lines.append(
            f"- Run: outputs not compared with the stored ones; {jobs} notebook(s) at a time, "
            f"cell timeout {cell_timeout} s, OMP_NUM_THREADS={env.get('omp_threads', 'unset')}"
        )
    lines += [
        "",
        "| Notebook | GPU-branch cells | GPU cells run | Result | Seconds |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        seconds = "" if r.seconds is None else f"{r.seconds:.0f}"
        lines.append(
            f"| {r.name} | {_cells(r.gpu_cells)} | {len(r.gpu_cells_run)} of {len(r.gpu_cells)} "
            f"| {_result_cell(r)} | {seconds} |"
        )
    listed = [r for r in results if r.problems and r.status in ("fail", "not finished")]
    if listed:
        lines += ["", "## Problems", ""]
        for r in listed:
            lines += [f"- {r.name}, {p.replace(chr(10), ' ')}" for p in r.problems]
    lines += ["", "## CUDA fixtures in data/", ""]
    if fixtures is None:
        lines.append("- not checked (no CUDA, or --no-fixtures)")
    else:
        for f in fixtures:
            lines.append(
                f"- `{f.file}` ({f.tag}): {'match' if f.ok else '**MISMATCH**'}"
            )
            lines += [f"  - {x}" for x in f.lines]
    with_output = [(r, i) for r in results for i in sorted(r.gpu_outputs)]
    if with_output:
        lines += ["", "## What the GPU-branch cells printed", ""]
        for r, i in with_output:
            lines += [
                f"{r.name}, cell {i}:",
                "",
                *_fence(r.gpu_outputs[i] or ["(no text output)"]),
                "",
            ]
    with_stderr = [(r, i) for r in results for i in sorted(r.stderr)]
    if with_stderr:
        lines += [
            "",
            "## Cells that wrote to stderr (warnings are output: read them)",
            "",
        ]
        for r, i in with_stderr:
            lines += [f"{r.name}, cell {i}:", "", *_fence(r.stderr[i]), ""]
    return "\n".join(lines).rstrip() + "\n"


def write_report(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def overall_ok(
    results: list[NotebookResult], fixtures: list[FixtureCheck] | None
) -> bool:
    return (
        bool(results)
        and all(r.passed for r in results)
        and fixtures is not None
        and all(f.ok for f in fixtures)
    )


# --------------------------------------------------------------------------------------------
# Running them all
# --------------------------------------------------------------------------------------------
class _Stop(Exception):
    pass


def _on_term(signum, frame):  # noqa: ARG001
    raise _Stop(f"stopped by signal {signum}")


def _run_all(
    paths: list[Path], args, env: dict[str, str], fixtures, cuda_available: bool
) -> list[NotebookResult]:
    """Run each notebook in its own worker process (``--worker``), ``args.jobs`` at a time."""
    results = {
        p: NotebookResult(name=p.stem, gpu_cells=static_gpu_cells(p)) for p in paths
    }
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    queue, running = list(paths), {}

    def report(finished=False):
        write_report(
            args.report,
            render_report(
                list(results.values()),
                env,
                fixtures,
                cuda_available=cuda_available,
                finished=finished,
                jobs=args.jobs,
                cell_timeout=args.cell_timeout,
            ),
        )

    report()
    try:
        while queue or running:
            while queue and len(running) < args.jobs:
                path = queue.pop(0)
                out_json = RUN_DIR / f"{path.stem}.result.json"
                out_json.unlink(missing_ok=True)
                cmd = [
                    sys.executable,
                    "-m",
                    "tools.gpu_run",
                    "--worker",
                    str(path),
                    "--result-json",
                    str(out_json),
                    "--cell-timeout",
                    str(args.cell_timeout),
                ]
                if cuda_available:
                    cmd.append("--cuda")
                log = open(RUN_DIR / f"{path.stem}.log", "w")  # noqa: SIM115 - closed when the worker ends
                running[path] = (
                    subprocess.Popen(
                        cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
                    ),
                    out_json,
                    log,
                )
                print(f"started  {path.stem}", flush=True)
            time.sleep(0.5)
            for path, (proc, out_json, log) in list(running.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del running[path]
                if out_json.is_file():
                    results[path] = NotebookResult.from_json(
                        json.loads(out_json.read_text())
                    )
                else:
                    results[path] = NotebookResult(
                        name=path.stem,
                        status="fail",
                        problems=[
                            f"the worker exited with status {proc.returncode} and no result; see build/gpu-run/{path.stem}.log"
                        ],
                    )
                r = results[path]
                print(
                    f"finished {r.name}: {r.status}, GPU cells run {len(r.gpu_cells_run)} of {len(r.gpu_cells)}",
                    flush=True,
                )
                report()
    except (_Stop, KeyboardInterrupt) as e:
        for path, (proc, _, log) in running.items():
            proc.terminate()
            log.close()
            results[path].status = "not finished"
            results[path].problems = [f"not finished: {e or 'interrupted'}"]
        for path in queue:
            results[path].status = "not finished"
            results[path].problems = ["not started: the run was stopped"]
        report(finished=True)
        raise
    report(finished=True)
    return list(results.values())


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tools.gpu_run",
        description="Run every notebook with the GPU visible and write build/gpu-report.md.",
    )
    p.add_argument(
        "notebooks", nargs="*", type=Path, help="default: notebooks/[0-9][0-9]_*.ipynb"
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="notebooks at a time (default: %(default)s)",
    )
    p.add_argument(
        "--cell-timeout",
        type=int,
        default=300,
        help="seconds per cell (default: %(default)s)",
    )
    p.add_argument(
        "--report", type=Path, default=REPORT, help="default: build/gpu-report.md"
    )
    p.add_argument(
        "--no-fixtures",
        action="store_true",
        help="do not remake and compare the CUDA fixtures in data/",
    )
    p.add_argument(
        "--allow-cpu",
        action="store_true",
        help="run even without CUDA, to test this tool (proves nothing about GPUs; exit status 3)",
    )
    p.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--result-json", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--cuda", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.worker is not None:  # one notebook, in its own process (see _run_all)
        result = run_notebook(
            args.worker.resolve(),
            cuda_available=args.cuda,
            cell_timeout=args.cell_timeout,
            save_dir=RUN_DIR,
        )
        if args.result_json is not None:
            args.result_json.write_text(json.dumps(asdict(result), indent=1))
        return EXIT_OK
    if args.jobs < 1 or args.cell_timeout < 1:
        print("test-gpu: --jobs and --cell-timeout must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    reason = no_cuda_reason()
    if reason is not None and not args.allow_cpu:
        print(refusal_line(reason), file=sys.stderr)
        return EXIT_NO_CUDA
    cuda_available = reason is None
    paths = [p.resolve() for p in args.notebooks] or sorted(
        NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")
    )
    missing = [str(p) for p in paths if not p.is_file()]
    if missing or not paths:
        print(
            f"test-gpu: no such notebook: {', '.join(missing) or 'notebooks/[0-9][0-9]_*.ipynb'}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("PYTHONHASHSEED", "0")
    os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")
    args.report = args.report.resolve()
    env = environment()
    env["omp_threads"] = os.environ["OMP_NUM_THREADS"]
    print(
        f"test-gpu: {env['device']} | torch {env['torch']} | CUDA {env['cuda']} | {len(paths)} notebooks",
        flush=True,
    )
    fixtures = None
    if cuda_available and not args.no_fixtures:
        fixtures = check_fixtures()
        for f in fixtures:
            print(f"fixture {f.file}: {'match' if f.ok else 'MISMATCH'}", flush=True)
    signal.signal(signal.SIGTERM, _on_term)
    try:
        results = _run_all(paths, args, env, fixtures, cuda_available)
    except (_Stop, KeyboardInterrupt):
        print(
            f"test-gpu: stopped; partial report in {_shown(args.report)}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    ok = overall_ok(results, fixtures) or (
        args.no_fixtures and all(r.passed for r in results)
    )
    print(
        f"test-gpu: {'PASS' if ok and cuda_available else 'FAIL' if cuda_available else 'CPU dry run done'}; "
        f"report in {_shown(args.report)}",
        flush=True,
    )
    if not cuda_available:
        return EXIT_NO_CUDA
    return EXIT_OK if ok else EXIT_FAILED


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return path.name


if __name__ == "__main__":
    raise SystemExit(main())
