"""Regression tests for the technical review's findings on labs_utils.toolkit.inspector.

A9 (a training checkpoint with a top-level tensor was read as a state_dict) and B7 ("parameters"
counted buffers; inspect read the whole file into memory). Built from the review's experiment
scripts e12_conv.py, e_insp.py and e_insp_mem.py.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from labs_utils.models import SmallCNN
from labs_utils.toolkit import inspect_checkpoint

ROOT = Path(__file__).resolve().parents[1]


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
    torch.save(
        {"model": m.state_dict(), "step": torch.tensor(100)}, tmp_path / "ck.pth"
    )
    r = inspect_checkpoint(tmp_path / "ck.pth")
    assert r.weights_entry == "model" and r.weights_elements == 6
    assert r.top_level_keys == ["model", "step"] and r.tensors == 3


def test_nested_state_dict_under_an_unknown_key_is_not_taken_for_the_top_level(
    tmp_path,
):
    m = torch.nn.Linear(2, 2)
    torch.save(
        {"ema_weights": m.state_dict(), "step": torch.tensor(100)}, tmp_path / "ck.pth"
    )
    r = inspect_checkpoint(tmp_path / "ck.pth")
    assert r.weights_entry is None and any("no state_dict found" in n for n in r.notes)


def test_a_plain_state_dict_is_still_the_file_itself(tmp_path):
    sd = {
        "weight": torch.ones(2, 2),
        "model": torch.ones(1),
    }  # a layer really named "model"
    torch.save(sd, tmp_path / "sd.pth")
    assert inspect_checkpoint(tmp_path / "sd.pth").weights_entry == ""


@pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(),
    reason="needs Linux /proc to measure peak memory",
)
def test_inspect_maps_a_large_file_instead_of_reading_it(tmp_path):
    path = tmp_path / "big.pth"
    torch.save({f"w{i}": torch.zeros(1024, 1024) for i in range(32)}, path)  # 128 MiB
    size_mib = path.stat().st_size / 2**20
    code = textwrap.dedent(f"""
        from labs_utils.toolkit import inspect_checkpoint
        def hwm():
            return next(int(l.split()[1]) // 1024 for l in open("/proc/self/status") if l.startswith("VmHWM"))
        open("/proc/self/clear_refs", "w").write("5")  # reset the peak
        base = hwm()
        r = inspect_checkpoint({str(path)!r})
        assert r.tensors == 32, r
        print(hwm() - base)
    """)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    peak_mib = int(out.stdout.split()[-1])
    assert peak_mib < size_mib / 8, (
        f"inspect_checkpoint added {peak_mib} MiB for a {size_mib:.0f} MiB file"
    )


def test_legacy_files_are_still_inspected(tmp_path):
    torch.save(
        {"w": torch.ones(3)}, tmp_path / "old.pth", _use_new_zipfile_serialization=False
    )
    r = inspect_checkpoint(tmp_path / "old.pth")
    assert r.format == "torch.save (legacy format)" and r.weights_elements == 3
