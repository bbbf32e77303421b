"""Checks of notebooks/11_distributed_checkpoints.ipynb: the notebook's answers pass, the check's
sharded checkpoint is a real one, learner errors of any kind become hints, and reading tensor data
is noticed where the task says "only .metadata"."""

import os
import warnings

import pytest
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from labs_utils.checks import check, nb11


def dcp_to_weights(dcp_dir, out_path):  # the notebook's solution
    tmp = f"{out_path}.full.tmp"
    dcp_to_torch_save(dcp_dir, tmp)
    torch.save(torch.load(tmp, weights_only=True)["model"], out_path)
    os.remove(tmp)


def saved_shapes(dcp_dir):  # the notebook's solution
    meta = dcp.FileSystemReader(str(dcp_dir)).read_metadata()
    return {
        key[len("model.") :]: tuple(item.size)
        for key, item in meta.state_dict_metadata.items()
        if key.startswith("model.") and hasattr(item, "size")
    }


def test_notebook_answers_pass():
    assert check.dcp_to_weights(dcp_to_weights)
    result = check.saved_shapes(saved_shapes)
    assert result and "sharded or not" in repr(result)


def test_the_sharded_checkpoint_is_a_real_two_rank_one(tmp_path):
    """Two files, tensors in chunks smaller than the whole (of unequal sizes for odd row counts), and
    both dcp_to_torch_save and dcp.load put the chunks back together exactly."""
    state, weights = nb11._train_state(seed=3, width=9, classes=5)
    folder = tmp_path / "ckpt"
    nb11._save_sharded(folder, state)
    assert sorted(p.name for p in folder.iterdir()) == [
        ".metadata",
        "__0_0.distcp",
        "__1_0.distcp",
    ]
    meta = dcp.FileSystemReader(str(folder)).read_metadata().state_dict_metadata
    head = meta["model.decoder.weight"]
    assert tuple(head.size) == (5, 9) and [tuple(c.sizes) for c in head.chunks] == [
        (3, 9),
        (2, 9),
    ]
    # 0-dim: written once
    assert len(meta["model.submodel.1.num_batches_tracked"].chunks) == 1
    dcp_to_torch_save(folder, tmp_path / "full.pth")
    full = torch.load(tmp_path / "full.pth", weights_only=True)
    assert full["step"] == 1 and set(full) == {"model", "model_ema", "optim", "step"}
    assert all(torch.equal(full["model"][k], v) for k, v in weights.items())
    loaded = {"model": {k: torch.zeros_like(v) for k, v in weights.items()}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.load(loaded, checkpoint_id=folder, no_dist=True)
    assert all(torch.equal(loaded["model"][k], v) for k, v in weights.items())


@pytest.mark.parametrize("name", ["dcp_to_weights", "saved_shapes"])
def test_a_checkpoint_exception_from_the_learner_is_a_hint(name):
    """CheckpointException derives from BaseException: it must not escape the check cell."""

    def fails(*args):
        raise CheckpointException("rank 0 failed", {})

    assert issubclass(CheckpointException, BaseException) and not issubclass(
        CheckpointException, Exception
    )
    result = getattr(check, name)(fails)
    assert result.status == "wrong" and "CheckpointException" in result.message


def test_loading_into_the_notebooks_net_gets_a_short_hint_without_a_traceback():
    from labs_utils.models import Net
    from labs_utils.workers.dcp_workers import load_single_process

    def into_net(dcp_dir, out_path):
        model = Net()
        load_single_process(model, None, dcp_dir)
        torch.save(model.state_dict(), out_path)

    result = check.dcp_to_weights(into_net)
    assert result.status == "wrong" and "dcp_to_torch_save" in result.message
    assert "Traceback" not in result.message and "site-packages" not in result.message


def test_reading_tensor_bytes_by_hand_is_noticed():
    """Shapes taken from tensors read with torch.load, even after reading .metadata, are refused."""

    def reads_a_chunk(dcp_dir):
        shapes = saved_shapes(dcp_dir)
        dcp_to_torch_save(dcp_dir, os.path.join(dcp_dir, "..", "peek.pth"))
        return shapes

    result = check.saved_shapes(reads_a_chunk)
    assert result.status == "wrong" and "read tensor data" in result.message


def test_a_temporary_file_left_in_the_checkpoint_folder_is_refused():
    def temp_in_checkpoint(dcp_dir, out_path):
        tmp = os.path.join(dcp_dir, "full.pth")
        dcp_to_torch_save(dcp_dir, tmp)
        torch.save(torch.load(tmp, weights_only=True)["model"], out_path)

    result = check.dcp_to_weights(temp_in_checkpoint)
    assert result.status == "wrong" and "checkpoint folder" in result.message


def test_the_checks_leave_no_warning_behind(recwarn):
    check.saved_shapes(saved_shapes)
    check.dcp_to_weights(dcp_to_weights)
    assert not [w for w in recwarn if "torch.distributed" in str(w.message)]
