"""Notebook 14 (the error field guide) and the files it teaches to recognise.

* The index links resolve: each ``[NN · heading](NN_name.ipynb)`` names a notebook that exists and a
  ``## heading`` it has, word for word; each ``(#eN)`` link has its anchor.
* The index covers every error the workbook shows: every cell tagged ``raises-exception`` in
  notebooks 01-12 sits in a section that the index links to.
* ``python -m labs_utils inspect`` names each broken file in one line with the fix (exit status 1),
  without unpickling anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import re
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch

from labs_utils.toolkit.cli import main

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
GUIDE = NOTEBOOKS / "14_error_field_guide.ipynb"
COVERED = [f"{n:02d}" for n in range(1, 13)]  # the notebooks whose errors the index must cover
LINK = re.compile(r"\[(\d\d) · ([^\]]+)\]\((\d\d_[a-z0-9_]+\.ipynb)\)")


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _markdown(path: Path) -> str:
    return "\n".join(_source(c) for c in _cells(path) if c["cell_type"] == "markdown")


def _headings(path: Path) -> list[str]:
    return [line[3:].strip() for line in _markdown(path).splitlines() if line.startswith("## ")]


def _links() -> list[tuple[str, str, str]]:
    # a heading may hold backquoted text with ']' in it; none does today, and the regex would say so
    return LINK.findall(_markdown(GUIDE))


def test_index_links_name_real_sections():
    links = _links()
    assert len(links) >= 30
    for number, heading, file in links:
        path = NOTEBOOKS / file
        assert path.exists(), f"the index links to {file}, which does not exist"
        assert file.startswith(number + "_"), f"{number} · {heading} points to {file}"
        assert heading in _headings(path), (
            f"{file} has no section '## {heading}' (the index of 14 links to it)"
        )


def test_index_anchors_exist():
    text = _markdown(GUIDE)
    targets = set(re.findall(r"\]\(#(e\d+)\)", text))
    anchors = set(re.findall(r'<a id="(e\d+)"></a>', text))
    assert targets and targets <= anchors, sorted(targets - anchors)
    assert len(anchors) == len(re.findall(r"^## \d+\. ", text, re.M))


def _error_sections(path: Path) -> list[tuple[str, str]]:
    """(section heading, first line of the stored error) of each raises-exception cell."""
    out, heading = [], None
    for cell in _cells(path):
        if cell["cell_type"] == "markdown":
            for line in _source(cell).splitlines():
                if line.startswith("## "):
                    heading = line[3:].strip()
        elif "raises-exception" in cell.get("metadata", {}).get("tags", []):
            error = next(
                (o for o in cell.get("outputs", []) if o.get("output_type") == "error"),
                None,
            )
            first = (
                (error["ename"] + ": " + error["evalue"].splitlines()[0][:80])
                if error and error["evalue"]
                else (error or {}).get("ename", "?")
            )
            out.append((heading, first))
    return out


@pytest.mark.parametrize("number", COVERED)
def test_index_covers_every_error_the_workbook_shows(number):
    path = next(NOTEBOOKS.glob(f"{number}_*.ipynb"))
    linked = {heading for n, heading, _ in _links() if n == number}
    missing = [(h, e) for h, e in _error_sections(path) if h not in linked]
    assert not missing, (
        f"{path.name}: errors in sections the index of 14 does not link to: {missing}; "
        "add a row to the index (notebooks/14_error_field_guide.ipynb)"
    )


def test_guide_entries_raise_real_errors():
    """Each numbered entry of 14 from 1 to 11, except the inspector's (4), holds a raises-exception cell
    whose stored error is PyTorch's (no labs_utils error stands in for one)."""
    entries = {}
    for heading, first in _error_sections(GUIDE):
        entries.setdefault(heading.split(".")[0], []).append(first)
    assert set(entries) == {str(n) for n in range(1, 12)} - {"4"}
    assert not any(
        "CheckpointError" in e or "InspectError" in e for errors in entries.values() for e in errors
    )


class _Calls:
    """Unpickling calls ``func(*args)``: the payload shape of 08 · 1 (never loaded unsafely here)."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


@pytest.mark.parametrize(
    "func, args",
    [(exec, ("1",)), (os.system, ("true",)), (subprocess.Popen, (["true"],))],
    ids=["exec", "os.system", "subprocess.Popen"],
)
def test_index_quotes_what_torch_prints_for_a_file_that_runs_code(func, args):
    """The index row for a file that runs code quotes the line torch.load really prints
    (torch 2.13: ``GLOBAL exec``, ``posix.system ... is blocked``, ``GLOBAL commands.Popen``)."""
    if func is os.system and os.name != "posix":
        pytest.skip("the index quotes posix.system; Windows names it nt.system (said in the row)")
    buf = io.BytesIO()
    torch.save({"x": _Calls(func, args)}, buf)
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError) as caught:
        torch.load(buf, weights_only=True)
    line = next(x for x in str(caught.value).splitlines() if "GLOBAL" in x).strip()
    quoted = line.removeprefix("WeightsUnpickler error: Unsupported global: ")
    quoted = quoted.split(" by default")[0]
    index = next(_source(c) for c in _cells(GUIDE) if "| The message, as printed |" in _source(c))
    row = next(r for r in index.splitlines() if "a file that runs code" in r)
    assert f"`{quoted}" in row or quoted.split(" was not")[0] in row, (quoted, row)


def test_index_meta_device_row_names_the_tensor_the_file_does_not_hold():
    """``Tensor on device meta ...`` comes from a tensor the state_dict lacks, left on meta by an
    assign=True load into a meta-built model (notebook 10 shows it), not from the order of loading."""
    with torch.device("meta"):
        model = torch.nn.Linear(2, 2)
    model.register_buffer("scale", torch.ones(2, device="meta"), persistent=False)
    source = torch.nn.Linear(2, 2)
    model.load_state_dict(source.state_dict(), assign=True)
    assert model.weight.device.type == "cpu" and model.scale.device.type == "meta"
    with pytest.raises(RuntimeError, match="Tensor on device meta is not on the expected"):
        _ = model.weight * model.scale
    index = next(_source(c) for c in _cells(GUIDE) if "| The message, as printed |" in _source(c))
    row = next(r for r in index.splitlines() if "Tensor on device meta" in r)
    meaning = row.split(" | ")[1]  # the middle column: what the message means
    assert "the state_dict does not hold" in meaning and "order" not in meaning, row


# --- the inspector on each kind of broken file, from the command line ---------------------------


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(old)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def _versioned(src: bytes, number: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(src)) as zin, zipfile.ZipFile(buf, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            zout.writestr(
                info,
                f"{number}\n".encode() if info.filename.endswith("/version") else data,
            )
    return buf.getvalue()


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("broken")
    torch.manual_seed(0)
    torch.save({"w": torch.randn(64, 64)}, d / "good.pth")
    good = (d / "good.pth").read_bytes()
    (d / "pointer.bin").write_text(
        f"version https://git-lfs.github.com/spec/v1\noid sha256:"
        f"{hashlib.sha256(good).hexdigest()}\nsize {len(good)}\n"
    )
    (d / "page.pth").write_text("<!DOCTYPE html><html><head><title>Sign in</title></head></html>")
    (d / "denied.pth").write_text('<?xml version="1.0"?><Error><Code>AccessDenied</Code></Error>')
    (d / "empty.pth").write_bytes(b"")
    (d / "cut.pth").write_bytes(good[: len(good) // 2])
    (d / "future.pth").write_bytes(_versioned(good, 11))
    with pytest.raises((pickle.PicklingError, AttributeError)):
        torch.save({"f": lambda x: x}, d / "unfinished.pth")
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore")
        torch.save({"w": torch.ones(2)}, d / "protocol4.pth", pickle_protocol=4)
    torch.save({"w": torch.ones(2)}, d / "legacy.pth", _use_new_zipfile_serialization=False)
    return d


@pytest.mark.parametrize(
    "name, words",
    [
        ("pointer.bin", "a Git LFS pointer"),
        ("page.pth", "an HTML page"),
        ("denied.pth", "it says AccessDenied"),
        ("empty.pth", "empty (0 bytes)"),
        ("cut.pth", "truncated: a zip archive"),
        ("future.pth", "written by a newer PyTorch: its version record says 11"),
        ("unfinished.pth", "torch.save began this file but never finished it"),
        ("protocol4.pth", "saved with pickle protocol 4"),
    ],
)
def test_inspect_names_each_broken_file_in_one_line(broken, name, words):
    r = _cli("inspect", name, cwd=broken)
    assert r.returncode == 1 and r.stdout == ""
    assert (
        r.stderr.count("\n") == 1 and r.stderr.startswith(f"error: {name}: ") and words in r.stderr
    )
    assert "Traceback" not in r.stderr


def test_inspect_reports_a_legacy_file_with_the_rewrite(broken):
    r = _cli("inspect", "legacy.pth", cwd=broken)
    assert r.returncode == 0 and "torch.save (legacy format)" in r.stdout
    assert (
        "mmap=True) refuses it" in r.stdout
        and "torch.save(torch.load(old, weights_only=True), new)" in r.stdout
    )
