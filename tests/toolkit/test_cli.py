"""python -m labs_utils inspect / convert, run as a user would: exit status, stdout, one-line errors."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from labs_utils.models import SimpleModel
from labs_utils.toolkit.cli import main

pytestmark = pytest.mark.heavy  # started early by make test (tests/conftest.py)


def run_subprocess(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The real command line, in a fresh interpreter (slow: a few seconds per call)."""
    return subprocess.run(
        [sys.executable, "-m", "labs_utils", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The same entry point, called in process (fast)."""
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as e:  # argparse usage errors and --help
                code = e.code
    finally:
        os.chdir(old)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


class Payload:
    def __reduce__(self):
        return (exec, ("open('marker.txt', 'w').write('ran')",))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    model = SimpleModel()
    sd = model.state_dict()
    torch.save(sd, d / "w.pth")
    torch.save({"model": {"module." + k: v for k, v in sd.items()}, "epoch": 2}, d / "last.pt")
    save_file(sd, d / "w.safetensors", metadata={"epoch": "2"})
    torch.save({"w": torch.ones(2), "p": Payload()}, d / "evil.pth")
    (d / "evil.pkl").write_bytes(pickle.dumps({"p": Payload()}))
    raw = (d / "w.pth").read_bytes()
    (d / "truncated.pth").write_bytes(raw[: len(raw) // 2])
    (d / "empty.pth").write_bytes(b"")
    (d / "random.pth").write_bytes(
        torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(1))
        .to(torch.uint8)
        .numpy()
        .tobytes()
        .replace(b"\x80", b"\x81")
        .replace(b"PK", b"pk")
    )
    st = (d / "w.safetensors").read_bytes()
    (d / "corrupt.safetensors").write_bytes(st[:8] + b"{not json" + st[17:])
    (d / "folder").mkdir()
    return d


def test_inspect_table(files):
    r = cli("inspect", "last.pt", cwd=files)
    assert r.returncode == 0, r.stderr
    assert "checkpoint last.pt" in r.stdout and "prefixes        module." in r.stdout
    assert "['model']: 67 elements" in r.stdout and "epoch, model" in r.stdout
    assert str(files) not in r.stdout and r.stderr == ""


def test_inspect_json(files):
    r = cli("inspect", "w.safetensors", "--json", cwd=files)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert (
        data["format"] == "safetensors"
        and data["weights_elements"] == 67
        and "parameters" not in data
    )
    assert data["metadata"] == {"epoch": "2"}
    data = json.loads(cli("inspect", "w.pth", "--json", cwd=files).stdout)
    assert (
        data["saved_on"] == {"cpu": 4} and data["dtypes"] == {"float32": 4} and data["safe_to_load"]
    )


def test_inspect_malicious_checkpoint_refused_not_run(files):
    r = cli("inspect", "evil.pth", cwd=files)
    assert r.returncode == 3
    assert "builtins.exec" in r.stdout and "REFUSED" in r.stdout
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: evil.pth: safe loading")
    assert not (files / "marker.txt").exists()


@pytest.mark.parametrize(
    "name, message",
    [
        ("missing.pth", "no such file"),
        ("folder", "is a folder"),
        ("empty.pth", "empty (0 bytes)"),
        ("truncated.pth", "truncated"),
        ("random.pth", "not a checkpoint"),
        ("evil.pkl", "imports builtins.exec"),
        ("corrupt.safetensors", "not a valid .safetensors file"),
    ],
)
def test_inspect_bad_input_one_line(files, name, message):
    r = cli("inspect", name, cwd=files)
    assert r.returncode == 1
    assert r.stdout == ""
    assert (
        r.stderr.count("\n") == 1
        and r.stderr.startswith(f"error: {name}: ")
        and message in r.stderr
    )
    assert "Traceback" not in r.stderr
    assert not (files / "marker.txt").exists()


def test_convert_and_inspect_result(files):
    r = cli("convert", "last.pt", "out/w.safetensors", "--strip-prefixes", cwd=files)
    assert r.returncode == 0, r.stderr
    assert (
        r.stdout.splitlines()[0]
        == "wrote out/w.safetensors: 4 tensors from last.pt['model'] ("
        + f"{(files / 'out/w.safetensors').stat().st_size:,} bytes)"
    )
    assert "stripped prefixes: module." in r.stdout and "torch.equal" in r.stdout
    back = load_file(files / "out/w.safetensors")
    sd = torch.load(files / "w.pth")
    assert set(back) == set(sd) and all(torch.equal(back[k], v) for k, v in sd.items())
    again = cli("convert", "last.pt", "out/w.safetensors", cwd=files)
    assert again.returncode == 1 and "--overwrite" in again.stderr
    assert cli("convert", "last.pt", "out/w.safetensors", "--overwrite", cwd=files).returncode == 0


@pytest.mark.parametrize(
    "src, dst, message",
    [
        ("missing.pth", "x.safetensors", "no such file"),
        ("truncated.pth", "x.safetensors", "truncated"),
        ("evil.pth", "x.safetensors", "refused"),
        ("w.pth", "x.bin", "should end in .safetensors"),
        ("w.safetensors", "x.safetensors", "already a .safetensors"),
    ],
)
def test_convert_bad_input(files, src, dst, message):
    r = cli("convert", src, dst, cwd=files)
    assert (
        r.returncode == 1
        and r.stderr.count("\n") == 1
        and message in r.stderr
        and "Traceback" not in r.stderr
    )
    assert not (files / dst).exists() and not (files / "marker.txt").exists()


def test_usage_errors(files):
    assert cli(cwd=files).returncode == 2
    assert cli("inspect", cwd=files).returncode == 2
    assert "inspect" in cli("--help", cwd=files).stdout


@pytest.mark.parametrize(
    "args, code",
    [
        (("inspect", "w.pth"), 0),
        (("inspect", "evil.pth"), 3),
        (("inspect", "random.pth"), 1),
        (("convert", "truncated.pth", "t.safetensors"), 1),
    ],
)
def test_exit_status_and_one_line_on_stderr(files, args, code):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = cli(*args, cwd=files)
    assert r.returncode == code and "Traceback" not in r.stderr and not caught
    assert r.stderr.count("\n") == (0 if code == 0 else 1)
    assert not (files / "marker.txt").exists()


def test_real_command_line(files):
    """One end-to-end run in a fresh interpreter: the entry point, exit status, streams, warnings."""
    r = run_subprocess("inspect", "evil.pth", cwd=files)
    assert r.returncode == 3 and "REFUSED" in r.stdout and "builtins.exec" in r.stdout
    assert r.stderr.startswith("error: evil.pth: safe loading") and r.stderr.count("\n") == 1
    assert "Traceback" not in r.stderr and "Warning" not in r.stderr
    assert not (files / "marker.txt").exists()


def test_inspect_names_a_torchscript_file_as_a_program(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript is deprecated
        torch.jit.save(torch.jit.script(torch.nn.Linear(3, 2)), tmp_path / "scripted.pt")
    r = cli("inspect", "scripted.pt", cwd=tmp_path)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("error: scripted.pt: a TorchScript program"), r.stderr
    assert "torch.jit.load runs its code, trust it like code" in r.stderr
    assert "will likely succeed" not in r.stderr
