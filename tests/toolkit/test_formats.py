"""labs_utils.toolkit.formats: one place tells files apart, so the loader and the inspector (and
the converter, which loads through load_checkpoint) name every file the same way."""

from __future__ import annotations

import logging
import warnings
import zipfile
from pathlib import Path

import pytest
import torch

from labs_utils.toolkit import CheckpointError, inspect_checkpoint, load_checkpoint
from labs_utils.toolkit.formats import kind


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("boom")


def _bad_files(d: Path) -> dict[str, Path]:
    good = d / "good.pth"
    torch.save({"w": torch.arange(1000.0)}, good)
    data = good.read_bytes()
    files = {
        "empty": b"",
        "lfs": b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 1234\n",
        "html": b"<!DOCTYPE html><html><head><title>Sign in</title></head></html>",
        "xml": b"<?xml version='1.0'?><Error><Code>AccessDenied</Code></Error>",
        "truncated": data[: len(data) // 2],
    }
    paths = {}
    for name, content in files.items():
        paths[name] = d / f"{name}.pth"
        paths[name].write_bytes(content)
    with zipfile.ZipFile(d / "foreign.pth", "w") as z:
        z.writestr("notes/readme.txt", "not a checkpoint")
    paths["foreign"] = d / "foreign.pth"
    with pytest.raises(RuntimeError):
        torch.save({"w": torch.ones(2), "x": Unpicklable()}, d / "torn.pth")
    paths["torn"] = d / "torn.pth"
    torch._logging.set_logs(export=logging.ERROR)
    try:
        exported = torch.export.export(torch.nn.Linear(3, 2).eval(), (torch.randn(4, 3),))
        torch.export.save(exported, d / "model.pt2")
    finally:
        torch._logging.set_logs()
    paths["pt2"] = d / "model.pt2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript is deprecated
        torch.jit.save(torch.jit.script(torch.nn.Linear(3, 2)), d / "scripted.pt")
    paths["torchscript"] = d / "scripted.pt"
    return paths


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    return _bad_files(tmp_path_factory.mktemp("formats"))


EXPECTED = {
    "empty": "the file is empty (0 bytes)",
    "lfs": "a Git LFS pointer",
    "html": "an HTML page",
    "xml": "an XML document",
    "truncated": "truncated: a zip archive",
    "foreign": "a zip archive, but not one written by torch.save",
    "torn": "torch.save began this file but never finished it",
    "pt2": "a torch.export program (.pt2), not a torch.save checkpoint: open it with torch.export.load",
    "torchscript": "a TorchScript program",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_loader_and_inspector_name_a_file_the_same_way(bad_files, name):
    path = bad_files[name]
    messages = []
    for call in (load_checkpoint, inspect_checkpoint):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # and nothing warns on the way
            with pytest.raises(CheckpointError) as e:
                call(path)
        messages.append(str(e.value))
    assert messages[0] == messages[1]
    assert messages[0].startswith(f"{path}: {EXPECTED[name]}"), messages[0]


def test_a_torchscript_file_is_refused_even_with_weights_only_false(bad_files):
    with pytest.raises(CheckpointError, match="trust it like code"):
        load_checkpoint(bad_files["torchscript"], weights_only=False)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")
def test_legacy_files_are_recognised_whatever_their_pickle_protocol(tmp_path):
    for protocol in (2, 4):
        path = tmp_path / f"legacy{protocol}.pth"
        torch.save(
            {"w": torch.ones(3)},
            path,
            _use_new_zipfile_serialization=False,
            pickle_protocol=protocol,
        )
        assert kind(path.read_bytes()[:64]) == "legacy"
    assert torch.equal(load_checkpoint(tmp_path / "legacy2.pth")["w"], torch.ones(3))
    assert inspect_checkpoint(tmp_path / "legacy2.pth").format == "torch.save (legacy format)"
    # protocol 4 frames its pickle, which safe loading does not read: named, not "a plain pickle"
    with pytest.raises(CheckpointError, match="refused by safe loading"):
        load_checkpoint(tmp_path / "legacy4.pth")
    with pytest.raises(CheckpointError, match="saved with pickle protocol 4"):
        inspect_checkpoint(tmp_path / "legacy4.pth")
