"""data/weights_mps.pth: a checkpoint whose storages carry Apple's 'mps' tag, made without a Mac
(notebook 19, section 4)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from labs_utils.models import SimpleModel

pytestmark = pytest.mark.heavy  # started early by make test (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]
PATH = ROOT / "data" / "weights_mps.pth"


def _tags(path):
    seen = set()
    torch.load(path, map_location=lambda s, loc: seen.add(loc) or s, weights_only=True)
    return seen


def test_file_is_small_tagged_and_documented():
    assert PATH.is_file(), "data/weights_mps.pth missing: run python data/make_mps_checkpoint.py"
    assert PATH.stat().st_size < 8192
    assert _tags(PATH) == {"mps"}
    assert PATH.name in (ROOT / "data" / "README.md").read_text()


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="the error only exists without MPS")
def test_loading_without_map_location_raises_pytorchs_error():
    with pytest.raises(RuntimeError, match="mps"):
        torch.load(PATH, weights_only=True)


@pytest.mark.parametrize("map_location", ["cpu", torch.device("cpu"), {"mps": "cpu"}])
def test_it_holds_simple_models_seed_0_weights(map_location):
    torch.manual_seed(0)
    expected = SimpleModel().state_dict()
    loaded = torch.load(PATH, map_location=map_location, weights_only=True)
    assert list(loaded) == list(expected)
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)


def test_the_script_remakes_the_same_file():
    proc = subprocess.run(
        [sys.executable, "data/make_mps_checkpoint.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "same tensors as a fresh remake: True" in proc.stdout
