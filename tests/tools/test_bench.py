"""The benchmark runs end to end on a tiny model and rejects bad arguments."""

import pytest

from tools import bench


def test_make_state_dict_size():
    sd = bench.make_state_dict(8, layer_mb=4)
    total = sum(t.numel() * t.element_size() for t in sd.values())
    assert 7 * 2**20 < total < 9 * 2**20 and len(sd) == 4
    # below one layer's size the layer shrinks: about size_mb, not a whole 32 MiB layer
    small = bench.make_state_dict(0.25)
    assert 0.25 * 2**20 < sum(t.numel() * t.element_size() for t in small.values()) < 0.3 * 2**20
    with pytest.raises(ValueError, match="positive"):
        bench.make_state_dict(0)


def test_run_small(tmp_path):
    # every save and load path on the smallest input that has them all: one 256 x 256 layer
    table = bench.run(size_mb=0.25, repeats=1, folder=tmp_path / "b")
    methods = [r[1] for r in table.rows]
    assert "save_checkpoint (new file)" in methods and "torch.save (new file)" in methods
    assert "torch.load(mmap=True)" in methods and "safetensors load_file" in methods
    assert all(float(r[2]) >= 0 for r in table.rows)
    assert not (tmp_path / "b").exists()  # files deleted afterwards
    assert "median of 1 runs" in str(table) and "2 tensors, 257.0 KiB of float32" in str(table)


def test_cli_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(["--repeats", "0"])
    assert e.value.code == 2 and "--repeats" in capsys.readouterr().err
