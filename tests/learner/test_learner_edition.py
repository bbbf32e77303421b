"""The learner edition: solutions replaced by placeholders, outputs cleared, and every learner
notebook still runs top to bottom, with every check reporting "not attempted yet"."""

import json
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tools.notebook_tools import (
    BEGIN,
    END,
    learner_edition,
    main,
    strip_solutions,
)

pytestmark = pytest.mark.heavy  # started early by make test (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_strip_solutions_keeps_indentation_and_hint():
    src = "# Hint: use x * x\ndef f(x):\n    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION\n"
    out = strip_solutions(src)
    assert "return x * x" not in out and "    pass  # Your turn: use x * x" in out
    ns = {}
    exec(out, ns)
    assert ns["f"](3) is None  # a placeholder body returns nothing: "not attempted yet"


def test_strip_solutions_value_answer_without_hint():
    out = strip_solutions(f"answer = ...\n{BEGIN}\nanswer = 42\n{END}")
    assert out.splitlines() == [
        "answer = ...",
        "pass  # Your turn: write your answer here, then run the check below",
    ]


@pytest.mark.parametrize(
    "bad,msg",
    [
        (f"{BEGIN}\nx = 1\n", "never closed"),
        (f"x = 1\n{END}\n", "without a"),
        (f"{BEGIN}\n{BEGIN}\n{END}\n", "inside another"),
    ],
)
def test_strip_solutions_rejects_broken_markers(bad, msg):
    with pytest.raises(ValueError, match=msg):
        strip_solutions(bad, where="nb.ipynb, cell 3")


def test_cli_reports_bad_input(tmp_path, capsys):
    assert main(["learner"]) == 2
    assert main(["learner", str(tmp_path), str(tmp_path / "missing.ipynb")]) == 2
    assert "missing.ipynb: no such notebook" in capsys.readouterr().err


def _run_learner_notebook(notebook: Path, tmp_path: Path) -> None:
    dst = tmp_path / notebook.name
    removed = learner_edition(notebook, dst)
    assert removed >= 2, f"{notebook.name} has fewer than 2 exercises"
    nb = nbformat.read(dst, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert not any(BEGIN in _source(c) or END in _source(c) for c in nb.cells)
    # Run it where nothing else runs (its scratch folder lands in tmp_path). Cells tagged
    # raises-exception may raise; any other error fails the run.
    NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    check_cells = [
        c for c in nb.cells if c.cell_type == "code" and _source(c).lstrip().startswith("check.")
    ]
    assert len(check_cells) >= 2
    for cell in check_cells:
        text = json.dumps(cell.outputs)
        assert "Not attempted yet" in text, (
            f"{notebook.name}: {_source(cell)!r} printed {text[:300]}"
        )
    shutil.rmtree(tmp_path / "runs", ignore_errors=True)


# One test class per notebook: `pytest --dist loadscope` (the Makefile's) sends each class to its
# own worker, so the learner notebooks run side by side instead of one after another. They are
# marked learner_run: `make test-learner` runs them (and .ci/run), `make test` does not.
for _notebook in NOTEBOOKS:
    _name = "TestLearner_" + _notebook.stem

    def _test(self, tmp_path, _notebook=_notebook):
        _run_learner_notebook(_notebook, tmp_path)

    _test.__name__ = "test_runs_and_checks_say_not_attempted"
    _test = pytest.mark.learner_run(_test)  # make test-learner
    globals()[_name] = type(_name, (), {"test_runs_and_checks_say_not_attempted": _test})


def test_sanitize_merges_stream_chunks_and_strips_paths(tmp_path):
    from tools.notebook_tools import sanitize_notebook, sanitize_text

    nb = {
        "cells": [
            {
                "cell_type": "code",
                "source": "",
                "metadata": {},
                "execution_count": 1,
                "outputs": [
                    {"output_type": "stream", "name": "stdout", "text": ["a: "]},
                    {"output_type": "stream", "name": "stdout", "text": ["1\nb: 2\n"]},
                    {
                        "output_type": "error",
                        "ename": "E",
                        "evalue": "x",
                        "traceback": [
                            "File /home/me/.venv/lib/python3.11/site-packages/torch/nn/modules/module.py:12"
                        ],
                    },
                ],
            }
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 4,
    }
    path = tmp_path / "n.ipynb"
    path.write_text(json.dumps(nb))
    assert sanitize_notebook(path)
    outs = json.loads(path.read_text())["cells"][0]["outputs"]
    assert outs[0]["text"] == ["a: 1\n", "b: 2\n"] and len(outs) == 2
    assert outs[1]["traceback"] == ["File .../site-packages/torch/nn/modules/module.py:12"]
    assert not sanitize_notebook(path)  # a second pass changes nothing
    assert sanitize_text("<object at 0x7f00deadbeef>") == "<object at 0x...>"


def test_sanitize_shows_an_intended_errors_message_first_and_nbval_still_passes(
    tmp_path,
):
    """In a raises-exception cell the stored traceback starts with its last line (the message),
    then the full traceback; nbval does not compare tracebacks, so strict nbval still passes."""
    import os
    import subprocess
    import sys

    from tools.notebook_tools import (
        MESSAGE_FIRST_NOTE,
        message_first,
        sanitize_notebook,
    )

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("print('before')"),
        nbformat.v4.new_code_cell(
            "raise ValueError('the message the lesson is about')",
            metadata={"tags": ["raises-exception"]},
        ),
    ]
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True).execute()
    path = tmp_path / "short_errors.ipynb"
    nbformat.write(nb, path)
    before = nb.cells[1].outputs[0]["traceback"]
    assert sanitize_notebook(path)
    after = json.loads(path.read_text())["cells"][1]["outputs"][0]["traceback"]
    assert after[0] == before[-1] and "the message the lesson is about" in after[0]
    assert after[1] == MESSAGE_FIRST_NOTE and after[2:] == before
    assert not sanitize_notebook(path)  # once only
    assert message_first(after) == after
    # nbval alone: the other installed plugins (xdist, ...) have no part in it
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "nbval"]
        + ["--nbval", "--nbval-current-env", path.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-2000:]  # strict: no --nbval-lax


def test_links_turn_backticked_notebook_names_into_relative_links(tmp_path):
    from tools.notebook_tools import link_notebook, link_notebook_names

    existing = {"01_state_dict_basics", "02_architecture_mismatch"}
    text = (
        "Next: `02_architecture_mismatch`. Files go to `runs/01_state_dict_basics/`;\n"
        "see [`02_architecture_mismatch`](02_architecture_mismatch.ipynb), "
        "`notebooks/02_architecture_mismatch.ipynb` and `99_missing`.\n"
        "```python\n`02_architecture_mismatch`\n```\n"
    )
    out = link_notebook_names(text, existing, own="01_state_dict_basics")
    link = "[`02_architecture_mismatch`](02_architecture_mismatch.ipynb)"
    assert out.count(link) == 3, out
    assert "`runs/01_state_dict_basics/`" in out and "`99_missing`" in out
    assert out.endswith("```python\n`02_architecture_mismatch`\n```\n")
    assert link_notebook_names(out, existing) == out
    # On copies of the real notebooks: every link the tool adds points to a notebook beside
    # it, and a second run changes nothing.
    import re

    def links(path):
        md = "\n".join(
            _source(c)
            for c in json.loads(path.read_text())["cells"]
            if c["cell_type"] == "markdown"
        )
        return re.findall(r"\]\((\d\d_[a-z0-9_]+\.ipynb)\)", md)

    for nb in NOTEBOOKS:
        shutil.copy(nb, tmp_path / nb.name)
    copies = sorted(tmp_path.glob("[0-9][0-9]_*.ipynb"))
    # The committed notebooks are already linked (make notebooks runs the tool): a run adds
    # nothing, and every link between notebooks points to one that exists.
    assert sum(link_notebook(p) for p in copies) == 0
    for path in copies:
        assert links(path), f"{path.name} links no other notebook"
        for target in links(path):
            assert (tmp_path / target).is_file(), f"{path.name} links {target}"


@pytest.mark.parametrize("on", [True, False], ids=["make-lab", "tests"])
def test_live_kernels_under_make_lab_show_the_message_first(tmp_path, on):
    """tools/ipython_kernel_config.py (copied into .venv by make setup): with
    WORKBOOK_MESSAGE_FIRST=1 (make lab, make learner-lab) a kernel shows an error's message
    first, as the stored outputs do; without it (tests, make notebooks) the kernel is plain."""
    import os

    from jupyter_client.manager import start_new_kernel

    from tools.notebook_tools import MESSAGE_FIRST_NOTE

    profile = tmp_path / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    shutil.copy(
        ROOT / "tools" / "ipython_kernel_config.py",
        profile / "ipython_kernel_config.py",
    )
    env = {**os.environ, "IPYTHONDIR": str(tmp_path / "ipython")}
    env.pop("WORKBOOK_MESSAGE_FIRST", None)
    if on:
        env["WORKBOOK_MESSAGE_FIRST"] = "1"
    km, kc = start_new_kernel(kernel_name="python3", env=env, startup_timeout=120)
    errors, names = [], []
    try:

        def hook(msg):
            if msg["msg_type"] == "error":
                errors.append(msg["content"]["traceback"])
            if msg["msg_type"] == "stream":
                names.append(msg["content"]["text"])

        kc.execute_interactive("def f():\n    1 / 0\nf()", timeout=60, output_hook=hook)
        kc.execute_interactive(
            "print(sorted(n for n in dir() if 'workbook' in n))",
            timeout=60,
            output_hook=hook,
        )
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    (traceback,) = errors
    assert "ZeroDivisionError" in traceback[-1]
    if on:
        assert traceback[0] == traceback[-1] and traceback[1] == MESSAGE_FIRST_NOTE
        assert message_first_is_idempotent(traceback)
    else:
        assert MESSAGE_FIRST_NOTE not in traceback
    assert names == ["[]\n"]  # the hook leaves no name in the learner's namespace


def message_first_is_idempotent(traceback):
    from tools.notebook_tools import message_first

    return message_first(traceback) == traceback


def test_learner_edition_links_to_other_files_work_from_the_learner_folder():
    """The learner folder (learner/, beside notebooks/) holds only notebooks: a link to another
    file of notebooks/ (LOADERS.md) is pointed there, ../ links work as they are."""
    import re

    from tools.notebook_tools import learner_notebook

    learner = ROOT / "learner"
    checked = 0
    for path in NOTEBOOKS:
        nb, _ = learner_notebook(path)
        for cell in nb["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            for target in re.findall(r"\]\(([^)\s]+)\)", _source(cell)):
                if re.match(r"([a-z][a-z0-9+.-]*:|#)", target) or re.match(
                    r"\d\d_[a-z0-9_]+\.ipynb", target
                ):
                    continue
                checked += 1
                where = (learner / target.split("#")[0]).resolve()
                assert where.exists(), f"{path.name}: {target} from learner/"
    assert checked  # 08 links LOADERS.md, 17 the README
