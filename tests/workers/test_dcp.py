"""labs_utils.workers.dcp_workers: a real two-process DCP save (gloo, CPU), loads with two and with one process,
and clear errors for bad input."""

import pytest
import torch

from labs_utils.workers import dcp_workers as dw

pytestmark = pytest.mark.heavy  # started early by make test (tests/conftest.py)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """Two ranks train a sharded model, save it with dcp.save, and load it back (one spawn, ~10 s)."""
    root = tmp_path_factory.mktemp("dcp")
    return dw.run_dcp_job(
        root / "ckpt", world_size=2, actions=("save", "load"), steps=2, timeout_s=180
    )


def _reference(job):
    return torch.load(job.reference, map_location="cpu", weights_only=True)


def test_two_ranks_write_a_file_each_plus_metadata(job):
    names = sorted(p.name for p in job.checkpoint_dir.iterdir())
    assert names == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    assert [r["save"]["local_shape"] for r in job.reports] == [[32, 32], [32, 32]]
    assert all(r["save"]["local_type"] == "DTensor" for r in job.reports)
    # logs live elsewhere
    assert not any(p.name.startswith("rank") for p in job.checkpoint_dir.iterdir())


def test_two_ranks_load_what_was_saved(job):
    for r in job.reports:
        load = r["load"]
        assert load["differs_before_load"] and load["model_equal"] and load["optimizer_equal"]
        assert load["step"] == 2
    text = repr(job)
    assert "DCPJob(2 ranks)" in text and "True" in text


def test_describe_reads_shards_from_metadata(job):
    table = dw.describe(job.checkpoint_dir, prefix="model.")
    rows = [r for r in table.rows if r[0] == "model.net.0.weight"]
    assert [(r[2], r[3], r[4]) for r in rows] == [
        ((0, 0), (32, 32), "__0_0.distcp"),
        ((32, 0), (32, 32), "__1_0.distcp"),
    ]
    assert "<table>" in table.to_html()


def test_one_process_loads_a_two_rank_checkpoint(job):
    ref = _reference(job)
    model = dw.build_model(seed=7)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    assert not torch.equal(model.net[0].weight, ref["model"]["net.0.weight"])
    extras = dw.load_single_process(model, optimizer, job.checkpoint_dir)
    assert extras == {"step": 2}
    for k, v in model.state_dict().items():
        assert torch.equal(v, ref["model"][k]), k
    names = [n for n, _ in model.named_parameters()]
    for i, name in enumerate(names):
        for field in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(optimizer.state_dict()["state"][i][field], ref["optim"][name][field])


def test_one_process_loads_model_only(job):
    model = dw.build_model(seed=8)
    dw.load_single_process(model, None, job.checkpoint_dir)
    assert torch.equal(model.net[2].bias, _reference(job)["model"]["net.2.bias"])


def test_format_utils_round_trip(job, tmp_path):
    from torch.distributed.checkpoint.format_utils import (
        dcp_to_torch_save,
        torch_save_to_dcp,
    )

    single = tmp_path / "full.pth"
    dcp_to_torch_save(job.checkpoint_dir, single)
    full = torch.load(single, weights_only=True)
    assert set(full) == {"model", "optim", "step"}
    for k, v in _reference(job)["model"].items():
        assert torch.equal(full["model"][k], v)
    back = tmp_path / "back"
    torch_save_to_dcp(single, back)
    assert sorted(p.name for p in back.iterdir()) == [".metadata", "__0_0.distcp"]
    model = dw.build_model(seed=9)
    dw.load_single_process(model, None, back)
    assert torch.equal(model.net[0].weight, full["model"]["net.0.weight"])


def test_rank0_writes_one_full_file_with_cpu_offload(job):
    """get_model_state_dict(full_state_dict=True, cpu_offload=True): rank 0 gets every tensor, on the
    CPU, the other rank an empty dict; rank 0's file equals the saved weights."""
    saves = [r["save"] for r in job.reports]
    assert [s["export_keys"] for s in saves] == [4, 0]
    assert saves[0]["export_devices"] == ["cpu"] and saves[1]["export_devices"] == []
    exported = torch.load(job.export, map_location="cpu", weights_only=True)
    ref = _reference(job)["model"]
    assert exported.keys() == ref.keys() and all(
        torch.equal(exported[k], v) for k, v in ref.items()
    )
    assert job.export.parent == job.log_dir and not (job.checkpoint_dir / dw.EXPORT).exists()


def test_local_state_dicts_are_plain_shards_that_fit_no_plain_model(job):
    """FSDP's "local" state dict: each rank's shards as plain tensors; together they are the full
    weights, but one alone does not load into the unsharded model."""
    ref = _reference(job)["model"]
    shards = [
        torch.load(job.log_dir / f"local_rank{r}.pth", map_location="cpu", weights_only=True)
        for r in (0, 1)
    ]
    for name, full in ref.items():
        assert all(type(s[name]) is torch.Tensor for s in shards)
        assert torch.equal(torch.cat([s[name] for s in shards]), full), name
    with pytest.raises(RuntimeError, match="size mismatch for net.0.weight"):
        dw.build_model().load_state_dict(shards[0])


def test_load_with_two_ranks_again_in_new_processes(job):
    again = dw.run_dcp_job(
        job.checkpoint_dir,
        world_size=2,
        actions=("load",),
        log_dir=job.log_dir,
        timeout_s=180,
    )
    assert all(r["load"]["model_equal"] and r["load"]["optimizer_equal"] for r in again.reports)
    assert all("save" not in r for r in again.reports)


# ---------------------------------------------------------------- bad input


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        dw.check_dcp_folder(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        dw.load_single_process(dw.build_model(), None, tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        dw.describe(tmp_path / "nope")


def test_folder_without_metadata(tmp_path):
    (tmp_path / "__0_0.distcp").write_bytes(b"partial")
    with pytest.raises(FileNotFoundError, match=r"no \.metadata.*interrupted"):
        dw.check_dcp_folder(tmp_path)


def test_a_file_is_not_a_dcp_folder(tmp_path):
    f = tmp_path / "weights.pth"
    torch.save({"a": torch.zeros(1)}, f)
    with pytest.raises(NotADirectoryError, match="torch.load"):
        dw.check_dcp_folder(f)


def test_wrong_types(tmp_path):
    with pytest.raises(TypeError, match="folder"):
        dw.check_dcp_folder(123)
    with pytest.raises(TypeError, match="nn.Module"):
        dw.load_single_process("model", None, tmp_path)
    with pytest.raises(ValueError, match="world_size"):
        dw.run_dcp_job(tmp_path / "c", world_size=0)
    with pytest.raises(ValueError, match="actions"):
        dw.run_dcp_job(tmp_path / "c", actions=("train",))
    with pytest.raises(TypeError, match="checkpoint_dir"):
        dw.run_dcp_job(None)


def test_save_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "old.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        dw.run_dcp_job(tmp_path, actions=("save",))


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")
def test_load_only_needs_a_checkpoint_and_reference(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        dw.run_dcp_job(tmp_path / "missing", actions=("load",))
    single = tmp_path / "single"
    torch.distributed.checkpoint.save(
        {"model": dw.build_model().state_dict()}, checkpoint_id=single, no_dist=True
    )
    with pytest.raises(FileNotFoundError, match="reference"):
        dw.run_dcp_job(single, actions=("load",))


def test_workers_need_a_process_group(tmp_path):
    with pytest.raises(RuntimeError, match="process group"):
        dw.train_and_save(0, 1, tmp_path / "c", log_dir=tmp_path)
    with pytest.raises(RuntimeError, match="process group"):
        dw.load_and_verify(0, 1, tmp_path / "c", log_dir=tmp_path)


def test_make_batches_split_by_rank():
    b0 = dw.make_batches(2, 0, 2)
    b1 = dw.make_batches(2, 1, 2)
    assert len(b0) == 2 and b0[0][0].shape == (16, 32)
    assert not torch.equal(b0[0][0], b1[0][0])


# ---------------------------------------------------------------- trusted folders only


class _Trojan:
    """Unpickling this writes a marker file, then returns ``value`` (notebook 11, section 9)."""

    def __init__(self, marker, value):
        self.marker, self.value = str(marker), value

    def __reduce__(self):
        return (
            eval,
            (
                f"open({self.marker!r}, 'w').write('ran') and value",
                {"value": self.value},
            ),
        )


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")
def test_reading_a_crafted_folder_runs_its_code(tmp_path):
    """What notebook 11 and the docstrings warn about, on this PyTorch: describe (read_metadata,
    plain pickle.load), dcp.load of a plain entry (torch.load weights_only=False) and
    torch_save_to_dcp (weights_only=False) all run a payload. If PyTorch ever makes these safe,
    this test fails, and the notebook's warning must be revisited."""
    import pickle

    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.format_utils import torch_save_to_dcp

    marker = tmp_path / "marker.txt"
    folder = tmp_path / "ckpt"
    dcp.save(
        {"model": dw.build_model().state_dict(), "step": _Trojan(marker, 3)},
        checkpoint_id=folder,
        no_dist=True,
    )
    assert not marker.exists()  # saving does not run it
    real = dcp.FileSystemReader(str(folder)).read_metadata()
    assert not marker.exists()

    state = {"model": dw.build_model(seed=1).state_dict(), "step": 0}
    dcp.load(state, checkpoint_id=folder, no_dist=True)
    assert state["step"] == 3 and marker.exists()
    marker.unlink()

    with open(folder / ".metadata", "wb") as f:
        pickle.dump(_Trojan(marker, real), f)
    table = dw.describe(folder, prefix="model.")
    assert len(table.rows) == 4 and marker.exists()
    marker.unlink()

    published = tmp_path / "published.pth"
    torch.save(
        {"model": dw.build_model().state_dict(), "note": _Trojan(marker, "v1")},
        published,
    )
    torch_save_to_dcp(published, tmp_path / "converted")
    assert marker.exists()


def test_helpers_that_read_a_folder_say_trusted_folders_only():
    for fn in (dw.describe, dw.load_single_process):
        assert "Trusted folders only" in fn.__doc__ and "pickle" in fn.__doc__
    assert "Trusted folders only" in dw.__doc__
