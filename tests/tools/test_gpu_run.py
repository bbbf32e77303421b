"""tools.gpu_run (``make test-gpu``): everything that needs no GPU.

The refusal without CUDA, the judgement of executed cells, the fixture check on the shipped
files, the report, and one CPU dry run of the whole tool on a tiny notebook."""

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch
from nbformat.v4 import new_code_cell, new_notebook, new_output

from tools import gpu_run
from tools.gpu_run import NotebookResult

pytestmark = pytest.mark.heavy  # started early by make test (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]


def _run(args, **env):
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def test_refuses_at_once_with_one_line_and_status_3(tmp_path):
    report = tmp_path / "gpu-report.md"
    code = (
        "import sys; from tools.gpu_run import main; "
        f"rc = main(['--report', {str(report)!r}]); "
        "print(rc, [m for m in ('torch', 'nbconvert') if m in sys.modules])"
    )
    proc = _run(["-c", code], CUDA_VISIBLE_DEVICES="")
    assert proc.stdout.split(None, 1) == ["3", "[]\n"], proc.stdout + proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("test-gpu: no CUDA device visible, nothing was run:")
    assert "CUDA_VISIBLE_DEVICES=''" in line
    assert not report.exists()


@pytest.mark.parametrize("visible", ["", " ", "-1", "-1,0"])
def test_hidden_gpus_are_seen_from_the_environment(visible):
    assert "hides every GPU" in gpu_run.no_cuda_reason({"CUDA_VISIBLE_DEVICES": visible})


def test_otherwise_torch_decides(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    assert "CPU-only build" in gpu_run.no_cuda_reason({"CUDA_VISIBLE_DEVICES": "0"})
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "is_available() is False" in gpu_run.no_cuda_reason({})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert gpu_run.no_cuda_reason({}) is None


def test_bad_options_are_a_usage_error(capsys):
    assert gpu_run.main(["--jobs", "0"]) == gpu_run.EXIT_USAGE == 2
    assert "at least 1" in capsys.readouterr().err


def _cell(source="x = 1", tags=(), text=None, error=None, ran=True):
    cell = new_code_cell(source, metadata={"tags": list(tags)} if tags else {})
    cell.execution_count = 1 if ran else None
    if text is not None:
        cell.outputs.append(new_output("stream", name="stdout", text=text))
    if error is not None:
        cell.outputs.append(new_output("error", ename=error, evalue="boom\nmore", traceback=[]))
    return cell


@pytest.mark.parametrize(
    "cell,cuda,expected",
    [
        (_cell(text="ok\n"), True, []),
        (_cell(error="RuntimeError"), False, ["raised RuntimeError: boom"]),
        (_cell(tags=["raises-exception"], error="RuntimeError"), True, []),
        (
            _cell(tags=["raises-exception"]),
            True,
            ["tagged raises-exception but did not raise"],
        ),
        (_cell(tags=["raises-exception"], ran=False), True, []),
        (_cell(tags=["raises-exception", "raises-without-cuda"], error="E"), False, []),
        (
            _cell(tags=["raises-exception", "raises-without-cuda"], error="RuntimeError"),
            True,
            ["tagged raises-without-cuda, but raised with CUDA too: RuntimeError: boom"],
        ),
        (_cell(tags=["raises-exception", "raises-without-cuda"]), True, []),
        (_cell(text="  Skipped: no CUDA\n"), False, []),
        (
            _cell(text="a\n  Skipped: no CUDA\n"),
            True,
            ["printed 'Skipped: no CUDA' although CUDA is available"],
        ),
    ],
)
def test_cell_problems(cell, cuda, expected):
    assert gpu_run.cell_problems(cell, cuda) == expected


def test_every_stored_skip_line_comes_from_a_cell_that_tests_for_cuda():
    """The convention the tool relies on: a GPU cell tests CUDA in the cell that says so."""
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for i, cell in enumerate(json.loads(path.read_text())["cells"]):
            if cell["cell_type"] == "code" and any(
                gpu_run.SKIP_LINE.match(line) for line in gpu_run.output_lines(cell)
            ):
                assert gpu_run.GPU_TEST.search("".join(cell["source"])), (path.name, i)


def test_assess_counts_gpu_cells_and_reports_what_stopped_the_run():
    gpu = "if torch.cuda.is_available():\n    print('on GPU')\nelse:\n    print('skipped: no CUDA')"
    nb = new_notebook(cells=[_cell(gpu, text="skipped: no CUDA\n"), _cell(ran=False)])
    cpu = gpu_run.assess(nb, "nb", cuda=False)
    assert (cpu.status, cpu.gpu_cells) == ("pass", {0: ["skipped: no CUDA"]})
    assert gpu_run.assess(nb, "nb", cuda=True).status == "fail"
    stopped = gpu_run.assess(nb, "nb", cuda=False, fatal="the run stopped: Timeout")
    assert (stopped.status, stopped.problems) == ("fail", ["the run stopped: Timeout"])


def test_fixtures_without_a_gpu_check_the_shipped_tags(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("with a GPU the fixtures are remade: make test-gpu checks that")
    results = dict((f, (ok, seen)) for f, ok, seen in gpu_run.check_fixtures())
    assert results["gpu_weights_cuda0.pth"] == (
        True,
        "tags ['cuda:0']; not remade: no cuda:0",
    )
    assert results["gpu_weights_cuda1.pth"][0] is True
    assert gpu_run.check_fixtures(tmp_path)[0][1] is False  # missing files fail


def test_report_verdicts():
    passed, failed = (
        NotebookResult("a", "pass"),
        NotebookResult("b", "fail", ["cell 3: raised X"]),
    )
    env = {"torch": "2.13.0"}
    assert "**Result: PASS.**" in gpu_run.render_report([passed], env, [("f", True, "ok")])
    assert "**Result: FAIL.**" in gpu_run.render_report([passed], env, [("f", False, "x")])
    text = gpu_run.render_report([passed, failed], env, None)
    assert "**Result: FAIL.**" in text and "- b, cell 3: raised X" in text
    assert "IN PROGRESS" in gpu_run.render_report([NotebookResult("c")], env, None)
    assert "NO CUDA" in gpu_run.render_report([passed], env, None, cuda=False)


def test_cpu_dry_run_of_the_whole_tool(tmp_path, monkeypatch, capsys):
    """main() as `python -m tools.gpu_run` calls it, in this process (torch is imported already);
    the notebook runs in a real kernel process, as under make test-gpu."""
    nb = new_notebook(
        cells=[
            new_code_cell("print('hello')"),
            new_code_cell("1 / 0", metadata={"tags": ["raises-exception"]}),
        ]
    )
    path = tmp_path / "01_tiny.ipynb"
    nbformat.write(nb, path)
    report = tmp_path / "report.md"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    for name in ("OMP_NUM_THREADS", "PYTHONHASHSEED"):  # main() sets them when unset
        monkeypatch.delenv(name, raising=False)
    rc = gpu_run.main(["--allow-cpu", "--report", str(report), str(path)])
    out = capsys.readouterr().out
    assert rc == gpu_run.EXIT_NO_CUDA, out
    assert "finished 01_tiny: pass" in out and "test-gpu: PASS" in out
    assert os.environ["OMP_NUM_THREADS"] == "1" and os.environ["PYTHONHASHSEED"] == "0"
    text = report.read_text()
    assert "NO CUDA" in text and "| 01_tiny | pass |" in text
