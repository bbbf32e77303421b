"""labs_utils.toolkit.inspect_checkpoint and convert_to_safetensors (in process): what a report
counts (elements, not parameters), memory, refused pickles read without running them, danger
labels, and the archives that are no torch.save checkpoint."""

from __future__ import annotations

import pickle
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from labs_utils import data_file
from labs_utils.models import SimpleModel, SmallCNN
from labs_utils.toolkit import (
    CheckpointError,
    InspectError,
    convert_to_safetensors,
    inspect_checkpoint,
)
from labs_utils.toolkit.prefixes import detect_prefixes


class Payload:
    """Unpickling this writes a marker file: the stand-in for malicious code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


@pytest.fixture
def model() -> SimpleModel:
    torch.manual_seed(0)
    return SimpleModel()


def _training_ckpt(model: SimpleModel, prefix: str = "") -> dict:
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 10)).sum().backward()
    opt.step()
    return {
        "model": {prefix + k: v for k, v in model.state_dict().items()},
        "optimizer": opt.state_dict(),
        "epoch": 3,
        "metrics": {"val_loss": 0.5},
    }


def test_state_dict(tmp_path, model):
    p = tmp_path / "w.pth"
    torch.save(model.state_dict(), p)
    r = inspect_checkpoint(p)
    assert r.format == "torch.save (zip archive)" and r.safe_to_load and r.refused_globals == []
    assert (
        r.weights_entry == ""
        and r.tensors == 4
        and r.weights_elements == 67
        and r.tensor_bytes == 67 * 4
    )
    assert r.dtypes == {"float32": 4} and r.saved_on == {"cpu": 4} and r.prefixes == []
    assert "67 elements" in str(r) and "parameters" not in str(r) and "<table>" in r._repr_html_()


def test_training_checkpoint_nested_with_prefix(tmp_path, model):
    p = tmp_path / "last.pt"
    torch.save(_training_ckpt(model, "module._orig_mod."), p)
    r = inspect_checkpoint(p)
    assert r.top_level_keys == ["epoch", "metrics", "model", "optimizer"]
    assert r.weights_entry == "model" and r.weights_elements == 67
    # optimizer moments and step counters are counted too
    assert r.tensors > 4 and r.elements > 67
    assert r.prefixes == ["module.", "_orig_mod."]


def test_legacy_format(tmp_path, model):
    p = tmp_path / "old.pth"
    torch.save(model.state_dict(), p, _use_new_zipfile_serialization=False)
    r = inspect_checkpoint(p)
    assert r.format == "torch.save (legacy format)" and r.weights_elements == 67


def test_shared_storage_reported(tmp_path):
    t = torch.ones(3)
    torch.save({"emb.weight": t, "head.weight": t}, tmp_path / "tied.pth")
    r = inspect_checkpoint(tmp_path / "tied.pth")
    assert r.shared_tensors == ["head.weight = emb.weight"] and r.tensor_bytes == 12


def test_cuda_saved_file_reported_without_cuda():
    """data/gpu_weights_cuda0.pth: storages tagged cuda:0, as a GPU writes them (data/README.md)."""
    r = inspect_checkpoint(data_file("gpu_weights_cuda0.pth"))
    assert r.saved_on == {"cuda:0": 4} and r.tensors == 4


def test_refused_files_are_not_run(tmp_path, model):
    marker = tmp_path / "marker.txt"
    torch.save({"w": torch.ones(2), "x": Payload(marker)}, tmp_path / "evil.pth")
    r = inspect_checkpoint(tmp_path / "evil.pth")
    assert not r.safe_to_load and r.refused_globals == ["builtins.exec"]
    assert r.storages == 1 and r.tensors is None
    assert not marker.exists()
    torch.save(model, tmp_path / "full.pth")
    r = inspect_checkpoint(tmp_path / "full.pth")
    assert r.refused_globals == [
        "labs_utils.models.SimpleModel",
        "torch.nn.modules.linear.Linear",
    ]
    assert r.storages == 4 and r.tensor_bytes == 67 * 4 and r.saved_on == {"cpu": 4}
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"x": Payload(marker)}, f)
    with pytest.raises(InspectError, match="imports builtins.exec"):
        inspect_checkpoint(tmp_path / "evil.pkl")
    assert not marker.exists()


def test_safetensors(tmp_path, model):
    p = tmp_path / "w.safetensors"
    save_file(
        {"module." + k: v for k, v in model.state_dict().items()},
        p,
        metadata={"epoch": "3"},
    )
    r = inspect_checkpoint(p)
    assert (
        r.format == "safetensors"
        and r.tensors == 4
        and r.weights_elements == 67
        and r.tensor_bytes == 268
    )
    assert r.metadata == {"epoch": "3"} and r.prefixes == ["module."] and r.saved_on == {}


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: None, "no such file"),
        (lambda p: p.mkdir(), "is a folder"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_bytes(bytes(range(256)) * 4), "not a checkpoint"),
    ],
)
def test_bad_paths(tmp_path, make, match):
    p = tmp_path / "x.pth"
    make(p)
    with pytest.raises((OSError, CheckpointError), match=match):
        inspect_checkpoint(p)


def test_truncated(tmp_path, model):
    p = tmp_path / "w.pth"
    torch.save(model.state_dict(), p)
    p.write_bytes(p.read_bytes()[:900])
    with pytest.raises(InspectError, match="truncated"):
        inspect_checkpoint(p)


def test_corrupt_safetensors_header(tmp_path, model):
    p = tmp_path / "w.safetensors"
    save_file(model.state_dict(), p)
    raw = p.read_bytes()
    p.write_bytes(raw[:8] + b"{oops" + raw[13:])
    with pytest.raises(InspectError, match="not a valid .safetensors"):
        inspect_checkpoint(p)


def test_detect_prefixes():
    assert detect_prefixes(["module.a", "module.b"]) == ["module."]
    assert detect_prefixes(["module.a", "b"]) == []
    assert detect_prefixes([]) == []


def test_type_error():
    with pytest.raises(TypeError, match="file path"):
        inspect_checkpoint(3)


# --- convert ---------------------------------------------------------------------------------------


def test_convert_training_checkpoint(tmp_path, model):
    ckpt = _training_ckpt(model, "module.")
    torch.save(ckpt, tmp_path / "last.pth")
    res = convert_to_safetensors(
        tmp_path / "last.pth", tmp_path / "w.safetensors", strip_prefixes=True
    )
    back = load_file(tmp_path / "w.safetensors")
    assert (
        set(back) == set(model.state_dict())
        and res.stripped == ["module."]
        and res.entry == "model"
    )
    assert all(torch.equal(back[k], v) for k, v in model.state_dict().items())
    assert (
        res.metadata["ckpt.epoch"] == "3"
        and "ckpt.epoch=3" in str(res)
        and "round trip" in str(res)
    )
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left nothing behind


def test_convert_keeps_prefixes_by_default_and_unties(tmp_path):
    t = torch.arange(4.0)
    torch.save({"module.a": t, "module.b": t}, tmp_path / "tied.pth")
    res = convert_to_safetensors(tmp_path / "tied.pth", tmp_path / "t.safetensors")
    back = load_file(tmp_path / "t.safetensors")
    assert set(back) == {"module.a", "module.b"} and res.untied == ["module.b (= module.a)"]
    assert torch.equal(back["module.a"], back["module.b"])


def test_convert_bad_input(tmp_path, model):
    torch.save(model.state_dict(), tmp_path / "w.pth")
    with pytest.raises(ValueError, match="should end in .safetensors"):
        convert_to_safetensors(tmp_path / "w.pth", tmp_path / "w.bin")
    (tmp_path / "out.safetensors").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="--overwrite"):
        convert_to_safetensors(tmp_path / "w.pth", tmp_path / "out.safetensors")
    torch.save({"epoch": 3}, tmp_path / "noweights.pth")
    with pytest.raises(ValueError, match="no state_dict"):
        convert_to_safetensors(tmp_path / "noweights.pth", tmp_path / "n.safetensors")
    torch.save({"a": torch.ones(1), "n": 3}, tmp_path / "mixed.pth")
    with pytest.raises(ValueError, match="tensors only"):
        convert_to_safetensors(tmp_path / "mixed.pth", tmp_path / "m.safetensors")
    torch.save(model, tmp_path / "full.pth")
    with pytest.raises(CheckpointError, match="refused"):
        convert_to_safetensors(tmp_path / "full.pth", tmp_path / "f.safetensors")
    assert not (tmp_path / "f.safetensors").exists()


# --- files that are not a loadable checkpoint: named from their bytes, nothing loaded --------------


@pytest.fixture
def nothing_loaded(monkeypatch):
    """Fail the test if the inspector hands the file to torch.load (through load_checkpoint)."""
    import labs_utils.toolkit.inspector as inspector

    def refuse(*args, **kwargs):
        raise AssertionError("the inspector loaded a file it should have named from its bytes")

    monkeypatch.setattr(inspector, "load_checkpoint", refuse)


def _lfs_pointer(real: bytes) -> bytes:
    import hashlib

    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(real).hexdigest()}\n"
        f"size {len(real)}\n"
    ).encode()


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.safetensors", "w.pth"])
def test_git_lfs_pointer(tmp_path, model, nothing_loaded, name):
    torch.save(model.state_dict(), tmp_path / "real.pth")
    real = (tmp_path / "real.pth").read_bytes()
    p = tmp_path / name
    p.write_bytes(_lfs_pointer(real))
    with pytest.raises(InspectError) as e:
        inspect_checkpoint(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}: a Git LFS pointer") and "\n" not in msg
    assert (
        f"the real file ({len(real):,} bytes)" in msg and f'git lfs pull --include="{name}"' in msg
    )


@pytest.mark.parametrize(
    "page, words",
    [
        (
            b'<!DOCTYPE html>\n<html lang="en"><head><title>Sign in - Files</title></head><body></body></html>',
            "HTML page ({n} bytes) titled 'Sign in - Files'",
        ),
        (
            b"\xef\xbb\xbf\n  <html><head><TITLE>\n Google Drive - Virus scan warning </TITLE></head></html>",
            "titled 'Google Drive - Virus scan warning'",
        ),
        (b"<html><body>404</body></html>", "HTML page ({n} bytes), not a checkpoint"),
        (
            b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied'
            b"</Message></Error>",
            "XML document ({n} bytes), not a checkpoint: probably an error response from the "
            "storage service (it says AccessDenied)",
        ),
    ],
)
@pytest.mark.parametrize("name", ["w.pth", "model.safetensors"])
def test_web_pages_saved_instead_of_the_file(tmp_path, nothing_loaded, page, words, name):
    p = tmp_path / name
    p.write_bytes(page)
    with pytest.raises(InspectError, match="download") as e:
        inspect_checkpoint(p)
    assert words.format(n=len(page)) in str(e.value) and "\n" not in str(e.value)


def test_empty_file_says_interrupted_and_the_fix(tmp_path, nothing_loaded):
    (tmp_path / "w.pth").write_bytes(b"")
    with pytest.raises(
        InspectError, match=r"empty \(0 bytes\).*interrupted.*download or copy it again"
    ):
        inspect_checkpoint(tmp_path / "w.pth")


@pytest.mark.parametrize("keep", [0.01, 0.2, 0.5, 0.99, -1])
def test_truncated_zip_named_before_loading(tmp_path, nothing_loaded, keep):
    """Every cut gives torch.load one of several messages (OSError, 'failed finding central directory');
    the inspector says 'truncated' for all of them, from the missing end of the archive."""
    torch.manual_seed(0)
    torch.save({"w": torch.randn(64, 64)}, tmp_path / "w.pth")
    raw = (tmp_path / "w.pth").read_bytes()
    cut = raw[:keep] if keep == -1 else raw[: int(len(raw) * keep)]
    (tmp_path / "w.pth").write_bytes(cut)
    with pytest.raises(InspectError) as e:
        inspect_checkpoint(tmp_path / "w.pth")
    assert (
        f"truncated: a zip archive (the format torch.save writes) that ends before its central directory "
        f"({len(cut):,} bytes)"
        in str(e.value)
        and "sha256" in str(e.value)
    )


def test_unfinished_torch_save_is_named(tmp_path, nothing_loaded):
    """torch.save opens the archive, then pickling fails: the file is left without data.pkl."""

    class Local:
        pass

    with pytest.raises((pickle.PicklingError, AttributeError)):
        torch.save({"w": torch.ones(2), "f": lambda x: x, "c": Local()}, tmp_path / "w.pth")
    assert (tmp_path / "w.pth").stat().st_size > 0
    with pytest.raises(InspectError, match="torch.save began this file but never finished it"):
        inspect_checkpoint(tmp_path / "w.pth")


def test_a_foreign_zip_is_not_called_an_unfinished_save(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "w.pth", "w") as zf:
        zf.writestr("notes/readme.txt", "hello")
    with pytest.raises(InspectError) as e:
        inspect_checkpoint(tmp_path / "w.pth")
    assert "never finished" not in str(e.value) and "not one written by torch.save" in str(e.value)


def test_legacy_format_report_says_mmap_refuses_it_and_how_to_rewrite(tmp_path, model):
    old, new = tmp_path / "old.pth", tmp_path / "new.pth"
    torch.save(model.state_dict(), old, _use_new_zipfile_serialization=False)
    r = inspect_checkpoint(old)
    assert r.format == "torch.save (legacy format)" and r.safe_to_load
    note = " ".join(r.notes)
    assert (
        "mmap=True) refuses it" in note
        and "torch.save(torch.load(old, weights_only=True), new)" in note
    )
    assert note in str(r)
    with pytest.raises(RuntimeError, match="mmap can only be used"):  # what the note claims
        torch.load(old, mmap=True, weights_only=True)
    torch.save(torch.load(old, weights_only=True), new)  # the fix it gives
    back = torch.load(new, mmap=True, weights_only=True)
    assert all(torch.equal(back[k], v) for k, v in model.state_dict().items())
    r = inspect_checkpoint(new)
    assert r.format == "torch.save (zip archive)" and r.notes == []


def test_legacy_format_refused_by_safe_loading_keeps_its_format_and_note(tmp_path, model):
    torch.save(model, tmp_path / "full_old.pth", _use_new_zipfile_serialization=False)
    r = inspect_checkpoint(tmp_path / "full_old.pth")
    assert not r.safe_to_load and r.format == "torch.save (legacy format)"
    assert "labs_utils.models.SimpleModel" in r.refused_globals and any(
        "mmap=True" in n for n in r.notes
    )


def _with_version_record(src: Path, dst: Path, record: str, value: bytes) -> None:
    import zipfile

    with (
        zipfile.ZipFile(src) as zin,
        zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout,
    ):
        prefix = zin.namelist()[0].split("/", 1)[0]
        for info in zin.infolist():
            if info.filename != f"{prefix}/{record}":
                zout.writestr(info, zin.read(info.filename))
        zout.writestr(f"{prefix}/{record}", value)


@pytest.mark.parametrize("record", ["version", ".data/version"])
def test_file_from_a_newer_pytorch(tmp_path, model, nothing_loaded, record):
    torch.save(model.state_dict(), tmp_path / "w.pth")
    _with_version_record(tmp_path / "w.pth", tmp_path / "new.pth", record, b"11\n")
    with pytest.raises(
        RuntimeError, match="Attempted to read a PyTorch file with version 11"
    ) as real:
        torch.load(tmp_path / "new.pth", weights_only=True)
    limit = str(real.value).split("maximum supported version for reading is ")[1].split(".")[0]
    with pytest.raises(InspectError) as e:
        inspect_checkpoint(tmp_path / "new.pth")
    msg = str(e.value)
    assert f"written by a newer PyTorch: its {record} record says 11" in msg
    assert (
        f"reads up to {limit};" in msg
        and ".safetensors" in msg
        and "+" not in msg.split("PyTorch (")[1][:12]
    )


def test_a_version_record_the_reader_accepts_is_inspected(tmp_path, model):
    torch.save(model.state_dict(), tmp_path / "w.pth")
    _with_version_record(tmp_path / "w.pth", tmp_path / "v3.pth", "version", b"3\n")
    assert inspect_checkpoint(tmp_path / "v3.pth").weights_elements == 67


@pytest.mark.parametrize("protocol, said", [(0, "0 or 1"), (1, "0 or 1"), (4, "4"), (5, "5")])
def test_other_pickle_protocols_are_named_not_called_malicious(tmp_path, model, protocol, said):
    """torch.save(..., pickle_protocol=4) is a real checkpoint that safe loading cannot read: the
    message says why, instead of 'its pickle could not be read; do not load it'."""
    import warnings

    p = tmp_path / "w.pth"
    torch.save(model.state_dict(), p, pickle_protocol=protocol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about protocols other than 2
        with pytest.raises(pickle.UnpicklingError, match="Unsupported operand") as real:
            torch.load(p, weights_only=True)
        operand = str(real.value).split("Unsupported operand ")[1].split()[0]
        with pytest.raises(InspectError) as e:
            inspect_checkpoint(p)
    msg = str(e.value)
    assert (
        f"saved with pickle protocol {said} " in msg and f"'Unsupported operand {operand}'" in msg
    )
    assert "nothing in it was run" in msg and "save it again" in msg and "\n" not in msg


def test_fix_imports_aliases_of_dangerous_globals_are_labelled(tmp_path):
    import os

    from labs_utils.toolkit.inspector import _is_dangerous

    for name in (
        "commands.Popen",
        "__builtin__.eval",
        "posix.system",
        "nt.system",
        "subprocess.check_output",
        "builtins.exec",
    ):
        assert _is_dangerous(name), name
    assert not _is_dangerous("collections.OrderedDict")

    class Call:
        def __reduce__(self):
            return (subprocess.Popen, (["true"],))

    path = tmp_path / "x.pth"
    torch.save({"w": torch.zeros(1), "x": Call()}, path)  # protocol 2: commands.Popen
    report = inspect_checkpoint(path)
    assert report.refused_globals == ["commands.Popen"]
    assert "commands.Popen   <- can run code or touch files" in str(report)
    assert os.path.exists(path)


# ---------------------------------------------------------------- what the report counts, and its memory


def test_counts_elements_and_says_so(tmp_path):
    model = SmallCNN()
    torch.save(model.state_dict(), tmp_path / "cnn.pth")
    r = inspect_checkpoint(tmp_path / "cnn.pth")
    elements = sum(v.numel() for v in model.state_dict().values())
    parameters = sum(p.numel() for p in model.parameters())
    assert elements != parameters  # BatchNorm buffers: the file cannot tell them apart
    assert r.weights_elements == elements and not hasattr(r, "parameters")
    text = str(r)
    assert (
        f"the file itself (a state_dict): {elements:,} elements" in text
        and "parameters" not in text
    )
    assert "parameters" not in r.to_json()


def test_training_checkpoint_with_a_top_level_tensor(tmp_path):
    m = torch.nn.Linear(2, 2)
    torch.save({"model": m.state_dict(), "step": torch.tensor(100)}, tmp_path / "ck.pth")
    r = inspect_checkpoint(tmp_path / "ck.pth")
    assert r.weights_entry == "model" and r.weights_elements == 6
    assert r.top_level_keys == ["model", "step"] and r.tensors == 3


def test_nested_state_dict_under_an_unknown_key_is_not_taken_for_the_top_level(
    tmp_path,
):
    m = torch.nn.Linear(2, 2)
    torch.save({"ema_weights": m.state_dict(), "step": torch.tensor(100)}, tmp_path / "ck.pth")
    r = inspect_checkpoint(tmp_path / "ck.pth")
    assert r.weights_entry is None and any("no state_dict found" in n for n in r.notes)


def test_a_plain_state_dict_is_still_the_file_itself(tmp_path):
    sd = {
        "weight": torch.ones(2, 2),
        "model": torch.ones(1),
    }  # a layer really named "model"
    torch.save(sd, tmp_path / "sd.pth")
    assert inspect_checkpoint(tmp_path / "sd.pth").weights_entry == ""


def _peak_mib() -> int:
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmHWM"))


def _reset_peak() -> int:
    Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from what is in use
    return _peak_mib()


needs_proc = pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to measure peak memory"
)


@needs_proc
def test_inspect_maps_a_large_file_instead_of_reading_it(tmp_path):
    path = tmp_path / "big.pth"
    torch.save({f"w{i}": torch.zeros(1024, 1024) for i in range(32)}, path)  # 128 MiB
    size_mib = path.stat().st_size / 2**20
    base = _reset_peak()
    r = inspect_checkpoint(path)
    added = _peak_mib() - base
    assert r.tensors == 32
    assert added < size_mib / 8, (
        f"inspect_checkpoint added {added} MiB for a {size_mib:.0f} MiB file"
    )


@needs_proc
def test_a_huge_memo_index_does_not_exhaust_memory(tmp_path):
    """A 12-byte pickle that stores into memo slot 2**28: the C unpickler allocates 4 GiB for it."""
    path = tmp_path / "memo.pkl"
    path.write_bytes(b"\x80\x02N" + b"r" + (2**28).to_bytes(4, "little") + b".")
    base = _reset_peak()
    with pytest.raises(InspectError, match="a plain pickle file"):
        inspect_checkpoint(path)
    assert _peak_mib() - base < 64


def test_legacy_files_are_still_inspected(tmp_path):
    torch.save({"w": torch.ones(3)}, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    r = inspect_checkpoint(tmp_path / "old.pth")
    assert r.format == "torch.save (legacy format)" and r.weights_elements == 3
