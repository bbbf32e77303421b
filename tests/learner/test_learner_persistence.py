"""A learner's work in the learner edition is never destroyed.

On a throwaway clone of the workbook (two notebooks, the real Makefile and tools/, this .venv),
a learner answers an exercise in learner/01, then runs every documented command that opens or
refreshes the edition: `make learner`, `make learner-lab` (JupyterLab started, then stopped),
`make clean`, and `git pull` of a commit that changed lesson 01 and 02 and added 03, followed by
`make learner`. The answer is still there after each; the changed lesson 01 is offered beside it
as 01_....updated.ipynb with a message, the unedited 02 is refreshed, 03 is added. Only
`make learner-reset` replaces the answer, after saying so, with a backup.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tools.notebook_tools import (
    STATE_FILE,
    fingerprint,
    learner_notebook,
    reset_learner,
    sync_learner,
)

pytestmark = pytest.mark.heavy  # started early by make test (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]
NB1, NB2, NB3 = (
    "01_state_dict_basics.ipynb",
    "02_architecture_mismatch.ipynb",
    "03_partial_loading_and_transfer.ipynb",
)
ANSWER = "my_answer = 'typed by the learner before lunch'"
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]

needs_tools = pytest.mark.skipif(
    not (shutil.which("make") and shutil.which("git")), reason="needs make and git"
)


# ---- the learner folder, without make --------------------------------------------------------
def _answer(path: Path) -> None:
    """Type an answer in the first placeholder and give the cell an output, as JupyterLab saves."""
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        if cell["cell_type"] == "code" and "pass  # Your turn" in src:
            cell["source"] = src.replace("pass  # Your turn", ANSWER + "  # Your turn", 1)
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "ok\n"}]
            cell["execution_count"] = 1
            break
    else:
        raise AssertionError(f"{path.name} has no placeholder")
    path.write_text(json.dumps(nb, indent=1, sort_keys=True))


def _has_answer(path: Path) -> bool:
    return ANSWER in path.read_text()


def _change_lesson(path: Path, mark: str) -> None:
    nb = json.loads(path.read_text())
    nb["cells"][0]["source"] = ["".join(nb["cells"][0]["source"]) + f"\n\n{mark}\n"]
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def test_sync_keeps_edits_refreshes_the_rest_and_offers_changed_lessons(tmp_path):
    src, dst = tmp_path / "notebooks", tmp_path / "learner"
    src.mkdir()
    for name in (NB1, NB2):
        shutil.copy(ROOT / "notebooks" / name, src / name)
    sources = [src / NB1, src / NB2]
    said = []
    out = sync_learner(dst, sources, say=said.append)
    assert out["added"] == [NB1, NB2] and (dst / STATE_FILE).is_file()
    _answer(dst / NB1)
    # JupyterLab opening and saving 02 again (other JSON layout, metadata) is not an edit.
    nb2 = json.loads((dst / NB2).read_text())
    nb2["metadata"]["saved_by"] = "jupyterlab"
    (dst / NB2).write_text(json.dumps(nb2, indent=2, sort_keys=True))
    out = sync_learner(dst, sources, say=said.append)
    assert out["kept"] == [NB1] and out["unchanged"] == [NB2]
    _change_lesson(src / NB1, "LESSON-1-CHANGED")
    _change_lesson(src / NB2, "LESSON-2-CHANGED")
    said.clear()
    out = sync_learner(dst, sources, say=said.append)
    assert out["offered"] == [NB1] and out["refreshed"] == [NB2]
    assert _has_answer(dst / NB1) and "LESSON-1-CHANGED" not in (dst / NB1).read_text()
    updated = dst / NB1.replace(".ipynb", ".updated.ipynb")
    assert "LESSON-1-CHANGED" in updated.read_text()
    assert "LESSON-2-CHANGED" in (dst / NB2).read_text()
    assert any(updated.name in line and "kept with your work" in line for line in said)
    # A notebook the learner deleted comes back; nothing else moves.
    (dst / NB2).unlink()
    out = sync_learner(dst, sources, say=said.append)
    assert out["added"] == [NB2] and out["offered"] == [NB1] and _has_answer(dst / NB1)


def test_reset_says_what_it_discards_keeps_a_backup_and_can_be_refused(tmp_path):
    src, dst = tmp_path / "notebooks", tmp_path / "learner"
    src.mkdir()
    shutil.copy(ROOT / "notebooks" / NB1, src / NB1)
    sync_learner(dst, [src / NB1], say=lambda s: None)
    _answer(dst / NB1)
    said = []
    assert reset_learner(dst, [src / NB1], say=said.append, confirm=lambda q: False) == []
    assert _has_answer(dst / NB1) and "Nothing changed." in said
    said.clear()
    assert reset_learner(dst, [src / NB1], say=said.append, now=0) == [NB1]
    assert "discards your work in 1 notebook(s)" in said[0]
    backups = list((dst / "backups").glob(f"*/{NB1}"))
    assert len(backups) == 1 and _has_answer(backups[0])
    fresh, _ = learner_notebook(src / NB1)
    assert fingerprint(json.loads((dst / NB1).read_text())) == fingerprint(fresh)


def test_an_earlier_build_learner_folder_is_adopted_once(tmp_path):
    old, dst = tmp_path / "build" / "learner", tmp_path / "learner"
    old.mkdir(parents=True)
    learner_notebook_path = old / NB1
    nb, _ = learner_notebook(ROOT / "notebooks" / NB1)
    learner_notebook_path.write_text(json.dumps(nb))
    _answer(learner_notebook_path)
    sync_learner(dst, [ROOT / "notebooks" / NB1], adopt=old, say=lambda s: None)
    assert _has_answer(dst / NB1)


# ---- every documented command, through make, on a clone ---------------------------------------
# What an outer `make test` or the caller's shell would pass down to the inner make.
_MAKE_ENV = {
    k: v
    for k, v in os.environ.items()
    if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "NB", "LAB_ARGS", "LEARNER")
}


def _run(cmd, cwd, **kw):
    proc = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=120, env=_MAKE_ENV, **kw
    )
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def _make(work: Path, *args: str) -> str:
    # -o: this .venv is ready; the clone's fresh file times must not trigger a reinstall.
    return _run(["make", "-o", ".venv/.installed", *args], work)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _learner_lab_starts_and_stops(work: Path) -> dict:
    """`make learner-lab` for real: wait until JupyterLab answers, read a setting, stop it."""
    port, token = _free_port(), "persistence"
    args = f"--no-browser --port={port} --ServerApp.ip=127.0.0.1 --IdentityProvider.token={token}"
    log = open(work.parent / "lab.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        ["make", "-o", ".venv/.installed", "learner-lab", f"LAB_ARGS={args}"],
        cwd=work,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=_MAKE_ENV,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise AssertionError(
                        "make learner-lab did not start JupyterLab:\n"
                        + (work.parent / "lab.log").read_text()[-3000:]
                    ) from None
                time.sleep(0.5)
        plugin = "@jupyterlab/apputils-extension:notification"
        with urllib.request.urlopen(
            f"{url}/lab/api/settings/{plugin}?token={token}", timeout=10
        ) as r:
            return json.loads(r.read())
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@needs_tools
def test_every_documented_command_keeps_the_learners_answer(tmp_path):
    upstream, work = tmp_path / "upstream", tmp_path / "work"
    for rel in ["Makefile", "pyproject.toml", "requirements.txt", ".gitignore"]:
        (upstream / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, upstream / rel)
    shutil.copytree(
        ROOT / "tools", upstream / "tools", ignore=shutil.ignore_patterns("__pycache__")
    )
    (upstream / "notebooks").mkdir()
    for name in (NB1, NB2):
        shutil.copy2(ROOT / "notebooks" / name, upstream / "notebooks" / name)
    _run(["git", "init", "-q", "-b", "main"], upstream)
    _run([*GIT, "add", "-A"], upstream)
    _run([*GIT, "commit", "-q", "-m", "workbook"], upstream)
    _run(["git", "clone", "-q", str(upstream), str(work)], tmp_path)
    (work / ".venv").symlink_to(ROOT / ".venv")

    out = _make(work, "learner")
    mine = work / "learner" / NB1
    assert "2 added" in out and mine.is_file()
    _answer(mine)

    out = _make(work, "learner")
    assert _has_answer(mine) and "1 with your work kept" in out, out

    settings = _learner_lab_starts_and_stops(work)
    assert _has_answer(mine)
    # make learner-lab (and make lab) open without the "Jupyter news?" pop-up.
    # (JupyterLab asks about news when the setting's value is "none", its default.)
    news = settings["schema"]["properties"]["fetchNews"]["default"]
    assert settings["settings"].get("fetchNews", news) == "false", settings

    (work / "build" / "scratch").mkdir(parents=True)
    (work / "build" / "learner").mkdir()  # where earlier versions kept the learner edition
    _make(work, "clean")
    assert _has_answer(mine) and not (work / "build" / "scratch").exists()
    assert (work / "build" / "learner").is_dir()
    assert "learner" not in _run(["git", "status", "--porcelain"], work)  # git-ignored

    # Upstream changes lessons 01 and 02 and adds 03; the learner pulls, then refreshes.
    _change_lesson(upstream / "notebooks" / NB1, "LESSON-1-CHANGED")
    _change_lesson(upstream / "notebooks" / NB2, "LESSON-2-CHANGED")
    shutil.copy2(ROOT / "notebooks" / NB3, upstream / "notebooks" / NB3)
    _run([*GIT, "commit", "-q", "-am", "lessons changed"], upstream)
    _run([*GIT, "add", "notebooks"], upstream)
    _run([*GIT, "commit", "-q", "-m", "notebook 03"], upstream)
    _run([*GIT, "pull", "-q"], work)
    out = _make(work, "learner")
    updated = work / "learner" / NB1.replace(".ipynb", ".updated.ipynb")
    assert _has_answer(mine) and "LESSON-1-CHANGED" not in mine.read_text()
    assert "LESSON-1-CHANGED" in updated.read_text()
    assert f"learner/{updated.name}" in out and "make learner-reset NB=01" in out, out
    assert "LESSON-2-CHANGED" in (work / "learner" / NB2).read_text()
    assert (work / "learner" / NB3).is_file()

    # Only an explicit reset replaces it: it says so and keeps a backup.
    out = _make(work, "learner-reset", "NB=01")
    assert "discards your work" in out and f"learner/{NB1}" in out, out
    backups = list((work / "learner" / "backups").glob(f"*/{NB1}"))
    assert len(backups) == 1 and _has_answer(backups[0])
    assert "LESSON-1-CHANGED" in mine.read_text() and not updated.exists()
    out = _make(work, "learner-reset")
    assert "nothing is discarded" in out
