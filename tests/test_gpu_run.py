"""tools.gpu_run (``make test-gpu``): the parts that need no GPU.

The refusal without CUDA, the rules that find GPU branches and skip lines, the judgement of
executed cells, and the report. Executing notebooks on a GPU is what the tool itself is for.
"""

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from tools import gpu_run
from tools.gpu_run import FixtureCheck, NotebookResult

ROOT = Path(__file__).resolve().parents[1]


def _run(args, **env):
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


# ---- refusing without CUDA ----------------------------------------------------------------------
def test_refuses_at_once_with_one_line_and_status_3(tmp_path):
    report = tmp_path / "gpu-report.md"
    proc = _run(
        ["-m", "tools.gpu_run", "--report", str(report)],
        CUDA_VISIBLE_DEVICES="",
    )
    assert proc.returncode == gpu_run.EXIT_NO_CUDA == 3
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("test-gpu: no CUDA device visible, nothing was run:")
    assert "CUDA_VISIBLE_DEVICES=''" in lines[0]
    assert not report.exists()


def test_refusal_imports_neither_torch_nor_jupyter():
    code = (
        "import sys; from tools.gpu_run import main; rc = main([]); "
        "print(rc, [m for m in ('torch', 'nbclient', 'nbconvert') if m in sys.modules])"
    )
    proc = _run(["-c", code], CUDA_VISIBLE_DEVICES="-1")
    assert proc.stdout.split(None, 1) == ["3", "[]\n"], proc.stdout + proc.stderr
    assert len(proc.stderr.splitlines()) == 1


@pytest.mark.parametrize("visible", ["", " ", "-1", "-1,0"])
def test_hidden_gpus_are_seen_from_the_environment(visible):
    assert "hides every GPU" in gpu_run.no_cuda_reason(
        {"CUDA_VISIBLE_DEVICES": visible}
    )


def test_otherwise_torch_decides(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    assert "CPU-only build" in gpu_run.no_cuda_reason({"CUDA_VISIBLE_DEVICES": "0"})
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "torch.cuda.is_available() is False" in gpu_run.no_cuda_reason({})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert gpu_run.no_cuda_reason({}) is None


def test_bad_options_are_a_usage_error():
    assert gpu_run.main(["--jobs", "0"]) == gpu_run.EXIT_USAGE == 2


# ---- what counts as a GPU branch ----------------------------------------------------------------
@pytest.mark.parametrize(
    "source,kind",
    [
        (
            "if torch.cuda.is_available():\n    x = 1\nelse:\n    print('skipped: no CUDA')",
            "branch",
        ),
        ("if torch.cuda.device_count() >= 2:\n    pass", "branch"),
        (
            "from torch import cuda\nif not cuda.is_available():\n    print('skipped: no CUDA')",
            "branch",
        ),
        (
            "for i in range(2):\n    if i and torch.cuda.is_available():\n        pass",
            "branch",
        ),
        (
            "device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')",
            "device choice",
        ),
        ("%matplotlib inline\nif torch.cuda.is_available():\n    pass", "branch"),
        (
            "if torch.cuda.is_available(:\n    pass",
            "branch",
        ),  # does not parse: the regular expression
        ("print('CUDA:', torch.cuda.is_available())", None),  # reports, does not branch
        ("HAS_GPU = torch.cuda.is_available()", None),
        (
            "if HAS_GPU:\n    pass",
            None,
        ),  # the documented blind spot: the test is in another cell
        ("if torch.backends.mps.is_available():\n    pass", None),
        ("x = 1", None),
    ],
)
def test_gpu_branch_kind(source, kind):
    assert gpu_run.gpu_branch_kind(source) == kind


def _cell(
    source="x = 1",
    *,
    stdout=None,
    stderr=None,
    error=None,
    result=None,
    tags=(),
    count=1,
):
    cell = new_code_cell(source, execution_count=count)
    if tags:
        cell.metadata["tags"] = list(tags)
    if stdout is not None:
        cell.outputs.append(new_output("stream", name="stdout", text=stdout))
    if stderr is not None:
        cell.outputs.append(new_output("stream", name="stderr", text=stderr))
    if result is not None:
        cell.outputs.append(
            new_output(
                "execute_result", data={"text/plain": result}, execution_count=count
            )
        )
    if error is not None:
        cell.outputs.append(
            new_output("error", ename=error[0], evalue=error[1], traceback=[])
        )
    return cell


GPU_SRC = "if torch.cuda.is_available():\n    run()\nelse:\n    print('skipped: no CUDA (needs a GPU)')"


@pytest.mark.parametrize(
    "cell,found",
    [
        (
            _cell(stdout="skipped: no CUDA (needs a GPU)\n"),
            ["skipped: no CUDA (needs a GPU)"],
        ),
        (_cell(stdout="a\n  Skipped: later line\n"), ["Skipped: later line"]),
        (_cell(stderr="skipped: on stderr\n"), ["skipped: on stderr"]),
        (_cell(result="skipped: as a result"), ["skipped: as a result"]),
        (
            _cell(stdout="steps: 60 | skipped at steps: [0, 1]\n"),
            [],
        ),  # 05's log, not a skip line
        (_cell(stdout="skipped after the resume: []\n"), []),
        (_cell(), []),
    ],
)
def test_skip_lines(cell, found):
    assert gpu_run.skip_lines(cell) == found


def test_every_stored_skip_line_in_the_workbook_comes_from_a_recognised_gpu_branch():
    """The stored outputs come from a CPU run, so every GPU cell printed its skip line there."""
    skipping = []
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(path.read_text())
        for i, cell in enumerate(nb["cells"]):
            if cell["cell_type"] == "code" and gpu_run.skip_lines(cell):
                skipping.append(
                    (path.stem, i, gpu_run.gpu_branch_kind("".join(cell["source"])))
                )
    assert skipping, (
        "no notebook prints a skip line on a CPU any more: update this test"
    )
    assert [s for s in skipping if s[2] != "branch"] == []


# ---- judging executed cells ---------------------------------------------------------------------
def test_cell_problems():
    def problems(cell, cuda=True):
        return gpu_run.cell_problems(cell, cuda)

    assert (
        problems(_cell(error=("RuntimeError", "boom\nmore"), tags=["raises-exception"]))
        == []
    )
    assert problems(_cell(tags=["raises-exception"])) == [
        "tagged raises-exception but did not raise"
    ]
    assert problems(_cell(tags=["raises-exception"], count=None)) == []  # never reached
    assert problems(_cell(error=("AssertionError", "weights differ\ndetail"))) == [
        "raised AssertionError: weights differ"
    ]
    assert problems(_cell(error=("AssertionError", ""))) == ["raised AssertionError"]
    assert problems(_cell(error=("KeyError", "'x'"), tags=["nbval-ignore-output"])) == [
        "raised KeyError: 'x'"
    ]
    cpu_host_error = [
        "raises-exception",
        "raises-without-cuda",
    ]  # 06: torch.load of a GPU file
    assert problems(_cell(tags=cpu_host_error)) == []
    assert problems(_cell(tags=cpu_host_error), cuda=False) == [
        "tagged raises-exception but did not raise"
    ]
    assert (
        problems(
            _cell(error=("RuntimeError", "Attempting..."), tags=cpu_host_error),
            cuda=False,
        )
        == []
    )
    assert problems(
        _cell(error=("RuntimeError", "Attempting..."), tags=cpu_host_error)
    ) == [
        "tagged raises-without-cuda, but raised with CUDA too: RuntimeError: Attempting..."
    ]
    gpu_skip = _cell(GPU_SRC, stdout="skipped: no CUDA (needs a GPU)\n")
    assert problems(gpu_skip) == [
        "its GPU branch was not taken although CUDA is available: "
        "printed 'skipped: no CUDA (needs a GPU)'"
    ]
    assert problems(gpu_skip, cuda=False) == []
    assert problems(_cell("helper()", stdout="skipped: no CUDA\n")) == [
        "a skip line although CUDA is available: printed 'skipped: no CUDA'"
    ]


def _notebook():
    return new_notebook(
        cells=[
            new_markdown_cell("# title"),
            _cell("import torch"),
            _cell(
                "device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')",
                stdout="cuda\n",
            ),
            _cell(GPU_SRC, stdout="float16 on NVIDIA X | scale now 65536.0\n"),
            _cell(
                "torch.load(f)", tags=["raises-exception"]
            ),  # 4: did not raise on the GPU
            _cell(GPU_SRC, stdout="skipped: no CUDA (needs a GPU)\n"),  # 5
            _cell("assert False", error=("AssertionError", "")),  # 6
            _cell("warn()", stderr="UserWarning: something\n"),  # 7
            _cell(GPU_SRC, count=None),  # 8: not reached
        ]
    )


def test_assess_notebook():
    r = gpu_run.assess_notebook(_notebook(), "05_x", cuda_available=True, seconds=12.0)
    assert r.status == "fail" and not r.passed
    assert r.gpu_cells == [
        (2, "device choice"),
        (3, "branch"),
        (5, "branch"),
        (8, "branch"),
    ]
    assert r.gpu_cells_run == [2, 3]
    assert r.problems == [
        "cell 4: tagged raises-exception but did not raise",
        "cell 5: its GPU branch was not taken although CUDA is available: printed 'skipped: no CUDA (needs a GPU)'",
        "cell 6: raised AssertionError",
    ]
    assert r.gpu_outputs == {
        2: ["cuda"],
        3: ["float16 on NVIDIA X | scale now 65536.0"],
        5: ["skipped: no CUDA (needs a GPU)"],
    }
    assert r.stderr == {7: ["UserWarning: something"]}
    # worker -> parent
    assert NotebookResult.from_json(json.loads(json.dumps(asdict(r)))) == r


def test_assess_notebook_that_passes_and_one_that_stopped():
    nb = new_notebook(
        cells=[
            _cell("import torch"),
            _cell(GPU_SRC, stdout="ran on cuda\n"),
            _cell(
                "torch.load(f)", tags=["raises-exception"], error=("RuntimeError", "x")
            ),
        ]
    )
    ok = gpu_run.assess_notebook(nb, "06_y", cuda_available=True)
    assert (ok.status, ok.problems, ok.gpu_cells_run) == ("pass", [], [1])
    on_cpu = gpu_run.assess_notebook(_notebook(), "05_x", cuda_available=False)
    assert on_cpu.gpu_cells_run == [] and all("skip" not in p for p in on_cpu.problems)
    stopped = gpu_run.assess_notebook(
        nb, "06_y", cuda_available=True, fatal="the run stopped: CellTimeoutError: ..."
    )
    assert stopped.status == "fail" and stopped.problems == [
        "the run stopped: CellTimeoutError: ..."
    ]


def test_an_unreadable_notebook_is_a_failure_not_a_crash(tmp_path):
    bad = tmp_path / "99_bad.ipynb"
    bad.write_text("{not json")
    r = gpu_run.run_notebook(bad, cuda_available=True, cell_timeout=5, save_dir=None)
    assert r.status == "fail" and r.problems[0].startswith(
        "could not read 99_bad.ipynb:"
    )


def test_static_gpu_cells(tmp_path):
    path = tmp_path / "05_x.ipynb"
    path.write_text(json.dumps(_notebook()))
    assert gpu_run.static_gpu_cells(path) == [
        (2, "device choice"),
        (3, "branch"),
        (5, "branch"),
        (8, "branch"),
    ]
    path.write_text("{not json")
    assert gpu_run.static_gpu_cells(path) == []


# ---- the CUDA fixtures (what can be checked without a GPU) -------------------------------------
def test_fixtures_without_a_gpu_check_the_shipped_tags(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    checks = gpu_run.check_fixtures()
    assert [(c.file, c.tag, c.ok) for c in checks] == [
        ("gpu_weights_cuda0.pth", "cuda:0", True),
        ("gpu_weights_cuda1.pth", "cuda:1", True),
    ]
    assert checks[1].lines == [
        "storage tags in the shipped file: ['cuda:1']",
        "not remade on a GPU: cuda:1 needs 2 GPUs, this machine has 0",
    ]
    # a cuda:0 file shipped under the cuda:1 name, and a missing file
    (tmp_path / "gpu_weights_cuda1.pth").write_bytes(
        (ROOT / "data" / "gpu_weights_cuda0.pth").read_bytes()
    )
    (wrong,) = [c for c in gpu_run.check_fixtures(tmp_path) if c.tag == "cuda:1"]
    (missing,) = [c for c in gpu_run.check_fixtures(tmp_path) if c.tag == "cuda:0"]
    assert (
        not wrong.ok
        and wrong.lines[0] == "storage tags in the shipped file: ['cuda:0']"
    )
    assert not missing.ok and missing.lines[0].startswith(
        "missing: data/gpu_weights_cuda0.pth"
    )


# ---- the report ---------------------------------------------------------------------------------
ENV = {
    "device": "NVIDIA H100 80GB HBM3",
    "gpus": "1",
    "capability": "9.0",
    "torch": "2.13.0+cu128",
    "cuda": "12.8",
    "cudnn": "91002",
    "nccl": "2.27.5",
    "python": "3.11.9",
    "omp_threads": "1",
}


def _results():
    good = NotebookResult(
        "05_amp",
        "pass",
        [(8, "branch")],
        [8],
        [],
        {8: ["float16 on NVIDIA H100 | scale now 65536.0"]},
        {},
        31.4,
    )
    bad = NotebookResult(
        "06_devices",
        "fail",
        [(10, "device choice"), (31, "branch")],
        [10],
        [
            "cell 6: tagged raises-exception but did not raise",
            "cell 31: raised AssertionError",
        ],
        {10: ["loaded onto: ['cuda:0']"], 31: []},
        {31: ["UserWarning: x"]},
        20.0,
    )
    plain = NotebookResult("01_basics", "pass", seconds=9.6)
    return [plain, good, bad]


def test_report_table_and_sections():
    fixtures = [
        FixtureCheck(
            "gpu_weights_cuda0.pth",
            "cuda:0",
            True,
            ["storage tags in the shipped file: ['cuda:0']"],
        ),
        FixtureCheck(
            "gpu_weights_cuda1.pth",
            "cuda:1",
            True,
            ["not remade on a GPU: cuda:1 needs 2 GPUs"],
        ),
    ]
    text = gpu_run.render_report(_results(), ENV, fixtures, jobs=4, cell_timeout=300)
    lines = text.splitlines()
    assert (
        lines[2]
        == "**Result: FAIL.** 2 of 3 notebooks passed, 1 failed; GPU cells run: 2 of 3."
    )
    assert (
        "- Device: NVIDIA H100 80GB HBM3 (1 GPU visible, compute capability 9.0)"
        in lines
    )
    assert (
        "- torch 2.13.0+cu128, CUDA 12.8, cuDNN 91002, NCCL 2.27.5, Python 3.11.9"
        in lines
    )
    table = lines[
        lines.index(
            "| Notebook | GPU-branch cells | GPU cells run | Result | Seconds |"
        ) :
    ][:5]
    assert table[2:] == [
        "| 01_basics | none | 0 of 0 | pass | 10 |",
        "| 05_amp | 8 | 1 of 1 | pass | 31 |",
        "| 06_devices | 10 (device choice), 31 | 1 of 2 | **FAIL** (2 problems) | 20 |",
    ]
    problems = lines[lines.index("## Problems") + 2 :][:2]
    assert problems == [
        "- 06_devices, cell 6: tagged raises-exception but did not raise",
        "- 06_devices, cell 31: raised AssertionError",
    ]
    assert "- `gpu_weights_cuda1.pth` (cuda:1): match" in lines
    assert "  - not remade on a GPU: cuda:1 needs 2 GPUs" in lines
    printed = lines[lines.index("05_amp, cell 8:") :][:5]
    assert printed == [
        "05_amp, cell 8:",
        "",
        "```text",
        "float16 on NVIDIA H100 | scale now 65536.0",
        "```",
    ]
    assert "(no text output)" in text and "UserWarning: x" in text


@pytest.mark.parametrize(
    "case,verdict",
    [
        ("all pass", "PASS"),
        ("fixture mismatch", "FAIL"),
        ("in progress", "IN PROGRESS"),
        ("stopped", "FAIL"),
        (
            "no cuda",
            "NO CUDA: a CPU dry run of the tool itself; it proves nothing about the GPU branches",
        ),
    ],
)
def test_report_verdict(case, verdict):
    results = _results()[:2]
    fixtures = [
        FixtureCheck("gpu_weights_cuda0.pth", "cuda:0", case != "fixture mismatch")
    ]
    kwargs = {}
    if case == "in progress":
        results.append(NotebookResult("07_ddp"))
        kwargs["finished"] = False
    if case == "stopped":
        results.append(
            NotebookResult(
                "07_ddp", "not finished", problems=["not started: the run was stopped"]
            )
        )
        assert "- 07_ddp, not started: the run was stopped" in gpu_run.render_report(
            results, ENV, fixtures
        )
    if case == "no cuda":
        kwargs["cuda_available"] = False
    text = gpu_run.render_report(results, ENV, fixtures, **kwargs)
    assert text.splitlines()[2].startswith(f"**Result: {verdict}.**")
    # a CPU dry run exits with status 3 whatever its notebooks did (main() decides that)
    assert gpu_run.overall_ok(results, fixtures) == (case in ("all pass", "no cuda"))


def test_report_is_written_whole(tmp_path):
    path = tmp_path / "build" / "gpu-report.md"
    gpu_run.write_report(path, "# one\n")
    gpu_run.write_report(path, "# two\n")
    assert path.read_text() == "# two\n" and [
        p.name for p in path.parent.iterdir()
    ] == ["gpu-report.md"]
