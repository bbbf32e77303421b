"""labs_utils.toolkit.convert_to_safetensors: the checkpoint's own values never overwrite the
header's ``format``/``source``, ``--strip-prefixes`` keeps a real submodule called ``module``, a
top-level tensor does not hide the ``model`` entry, and the output gets ``torch.save``'s file mode.
"""

from __future__ import annotations

import os
import stat

import pytest
import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import load_file

from labs_utils.toolkit import convert_to_safetensors
from labs_utils.toolkit.cli import main


class WithModule(nn.Module):
    """A model with a submodule really named ``module``."""

    def __init__(self):
        super().__init__()
        self.module = nn.Linear(2, 2)
        self.head = nn.Linear(2, 1)


def header(path) -> dict[str, str]:
    with safe_open(str(path), "pt") as f:
        return f.metadata()


def test_checkpoint_values_never_overwrite_the_reserved_metadata(tmp_path):
    m = nn.Linear(2, 2)
    torch.save(
        {
            "model": m.state_dict(),
            "format": "v2",
            "source": "colleague",
            "source_entry": "x",
            "stripped_prefixes": "y",
            "epoch": 3,
        },
        tmp_path / "ck_fmt.pth",
    )
    r = convert_to_safetensors(tmp_path / "ck_fmt.pth", tmp_path / "c1.safetensors")
    meta = header(tmp_path / "c1.safetensors")
    assert (
        meta
        == r.metadata
        == {
            "format": "pt",
            "source": "ck_fmt.pth",
            "source_entry": "model",
            "ckpt.format": "v2",
            "ckpt.source": "colleague",
            "ckpt.source_entry": "x",
            "ckpt.stripped_prefixes": "y",
            "ckpt.epoch": "3",
        }
    )
    assert "checkpoint values in the header: ckpt.format=v2, ckpt.source=colleague" in str(r)


def test_a_long_value_is_shortened_in_the_report_only(tmp_path):
    torch.save({"model": nn.Linear(2, 2).state_dict(), "note": "x" * 100}, tmp_path / "ck.pth")
    r = convert_to_safetensors(tmp_path / "ck.pth", tmp_path / "c.safetensors")
    assert header(tmp_path / "c.safetensors")["ckpt.note"] == "x" * 100
    assert "ckpt.note=" + "x" * 37 + "..." in str(r)


def test_strip_prefixes_keeps_a_submodule_named_module(tmp_path, capsys):
    model = WithModule()
    torch.save(model.state_dict(), tmp_path / "m_module.pth")
    code = main(
        [
            "convert",
            str(tmp_path / "m_module.pth"),
            str(tmp_path / "c3.safetensors"),
            "--strip-prefixes",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    back = load_file(tmp_path / "c3.safetensors")
    assert sorted(back) == ["head.bias", "head.weight", "module.bias", "module.weight"]
    assert str(WithModule().load_state_dict(back)) == "<All keys matched successfully>"
    assert "stripped prefixes: none (no wrapper prefix starts every key)" in out
    assert "kept 'module.' on 2 of 4 keys" in out


@pytest.mark.parametrize(
    "wrap, stripped",
    [
        ("module.", ["module."]),
        ("module._orig_mod.", ["module.", "_orig_mod."]),
        ("_orig_mod.module.", ["_orig_mod.", "module."]),
    ],
)
def test_strip_prefixes_removes_the_wrappers_once(tmp_path, wrap, stripped):
    model = WithModule()
    torch.save(
        {"model": {wrap + k: v for k, v in model.state_dict().items()}, "epoch": 1},
        tmp_path / "ddp.pth",
    )
    r = convert_to_safetensors(
        tmp_path / "ddp.pth", tmp_path / "w.safetensors", strip_prefixes=True
    )
    back = load_file(tmp_path / "w.safetensors")
    assert str(WithModule().load_state_dict(back)) == "<All keys matched successfully>"
    assert r.stripped == stripped and header(tmp_path / "w.safetensors")[
        "stripped_prefixes"
    ] == ",".join(stripped)
    assert f"stripped prefixes: {', '.join(stripped)}" in str(
        r
    ) and "kept 'module.' on 2 of 4 keys" in str(r)


def test_no_prefix_lines_unless_stripping_was_asked(tmp_path):
    torch.save(WithModule().state_dict(), tmp_path / "m.pth")
    text = str(convert_to_safetensors(tmp_path / "m.pth", tmp_path / "m.safetensors"))
    assert "prefixes" not in text


def test_weights_are_found_next_to_a_top_level_tensor(tmp_path):
    m = nn.Linear(2, 2)
    torch.save({"model": m.state_dict(), "step": torch.tensor(100)}, tmp_path / "ck_step.pth")
    r = convert_to_safetensors(tmp_path / "ck_step.pth", tmp_path / "c2.safetensors")
    back = load_file(tmp_path / "c2.safetensors")
    assert r.entry == "model" and sorted(back) == ["bias", "weight"]
    assert all(torch.equal(back[k], v) for k, v in m.state_dict().items())


def test_output_file_mode_is_that_of_open(tmp_path):
    old = os.umask(0o022)
    try:
        torch.save(nn.Linear(2, 2).state_dict(), tmp_path / "w.pth")
        dst = tmp_path / "w.safetensors"
        convert_to_safetensors(tmp_path / "w.pth", dst)
        assert stat.S_IMODE(dst.stat().st_mode) == 0o644
        os.chmod(dst, 0o640)
        convert_to_safetensors(tmp_path / "w.pth", dst, overwrite=True)
        assert stat.S_IMODE(dst.stat().st_mode) == 0o640
    finally:
        os.umask(old)
