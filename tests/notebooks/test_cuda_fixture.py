"""data/gpu_weights_cuda{0,1}.pth: checkpoints that carry CUDA device tags, made without a GPU."""

import functools
import importlib.util
from pathlib import Path

import pytest
import torch

from labs_utils.models import SimpleModel

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data"
FILES = {
    "cuda:0": DATA / "gpu_weights_cuda0.pth",
    "cuda:1": DATA / "gpu_weights_cuda1.pth",
}


def _tags(path):
    seen = set()

    def record(storage, location):
        seen.add(location)
        return storage

    torch.load(path, map_location=record, weights_only=True)
    return seen


@pytest.mark.parametrize("tag,path", FILES.items())
def test_files_are_small_and_tagged(tag, path):
    assert path.is_file(), f"{path.name} missing: run python data/make_cuda_checkpoint.py"
    assert path.stat().st_size < 8192
    assert _tags(path) == {tag}
    assert (
        tag.encode() in (DATA / "README.md").read_bytes()
        or path.name in (DATA / "README.md").read_text()
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error only exists without CUDA")
@pytest.mark.parametrize("path", FILES.values())
def test_loading_without_map_location_raises_pytorchs_cuda_error(path):
    with pytest.raises(RuntimeError, match="Attempting to deserialize object on a CUDA device"):
        torch.load(path, weights_only=True)


@pytest.mark.parametrize("path", FILES.values())
@pytest.mark.parametrize(
    "map_location",
    [
        "cpu",
        torch.device("cpu"),
        {"cuda:0": "cpu", "cuda:1": "cpu"},
        lambda storage, loc: storage,
    ],
)
def test_every_map_location_form_loads_the_documented_weights(path, map_location):
    torch.manual_seed(0)
    expected = SimpleModel().state_dict()
    for mmap in (False, True):
        sd = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
        assert list(sd) == list(expected)
        assert all(v.device.type == "cpu" and torch.equal(v, expected[k]) for k, v in sd.items())


def test_readme_documents_the_script():
    text = (DATA / "README.md").read_text()
    for needle in (
        "make_cuda_checkpoint.py",
        "gpu_weights_cuda0.pth",
        "gpu_weights_cuda1.pth",
        "register_package",
    ):
        assert needle in text


def test_script_remakes_the_same_tensors_and_tags(capsys):
    # main(["--check"]) in this process: tests/notebooks/test_mps_fixture.py runs the same main
    # as a script in a real process (python data/make_mps_checkpoint.py --check imports it)
    assert _script_module().main(["--check"]) == 0, capsys.readouterr().out
    assert capsys.readouterr().out.count("same tensors as a fresh remake: True") == 2


@functools.cache  # once per process: a second register_package(0, ...) would clash with the first
def _script_module():
    spec = importlib.util.spec_from_file_location(
        "make_cuda_checkpoint", DATA / "make_cuda_checkpoint.py"
    )
    mod = importlib.util.module_from_spec(spec)
    # registers a tagger that answers None (no opinion) outside tagged_as
    spec.loader.exec_module(mod)
    return mod


def test_tagging_is_scoped_and_validated(tmp_path):
    mod = _script_module()
    with mod.tagged_as("cuda:3"):
        torch.save({"w": torch.ones(2)}, tmp_path / "tagged.pth")
    torch.save({"w": torch.ones(2)}, tmp_path / "plain.pth")
    assert _tags(tmp_path / "tagged.pth") == {"cuda:3"}
    assert _tags(tmp_path / "plain.pth") == {"cpu"}  # outside the context nothing changes
    for bad in ("cpu", "cuda", "cuda:x", "gpu:0"):
        with pytest.raises(ValueError, match="cuda:0"):
            with mod.tagged_as(bad):
                pass
