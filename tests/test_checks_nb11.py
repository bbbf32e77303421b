"""Checks of notebooks/11_distributed_checkpoints.ipynb: right answers pass, wrong ones get their hint,
placeholders are "not attempted"."""
import os

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from labs_utils.checks import check



def dcp_to_weights(dcp_dir, out_path):
    tmp = f"{out_path}.full.tmp"
    dcp_to_torch_save(dcp_dir, tmp)
    torch.save(torch.load(tmp, weights_only=True)["model"], out_path)
    os.remove(tmp)


def dcp_to_weights_by_loading(dcp_dir, out_path):
    from labs_utils.dcp_workers import load_single_process
    from labs_utils.models import Net

    meta = dcp.FileSystemReader(str(dcp_dir)).read_metadata()
    shape = tuple(meta.state_dict_metadata["model.net.0.weight"].size)
    out_features = tuple(meta.state_dict_metadata["model.net.2.weight"].size)[0]
    model = Net(in_features=shape[1], hidden=shape[0], num_classes=out_features)
    load_single_process(model, None, dcp_dir)
    torch.save(model.state_dict(), out_path)


def saved_shapes(dcp_dir):
    meta = dcp.FileSystemReader(str(dcp_dir)).read_metadata()
    return {key[len("model."):]: tuple(item.size) for key, item in meta.state_dict_metadata.items()
            if key.startswith("model.") and hasattr(item, "size")}



def test_right_answers():
    assert check.dcp_to_weights(dcp_to_weights)
    assert check.dcp_to_weights(dcp_to_weights_by_loading)
    assert check.saved_shapes(saved_shapes)
    assert repr(check.saved_shapes(saved_shapes)).startswith("Correct!")


def test_errors_become_hints():
    def boom(dcp_dir, out_path):
        raise ValueError("bad")

    result = check.dcp_to_weights(boom)
    assert result.status == "wrong" and "ValueError" in result.message
    assert check.dcp_to_weights(3).status == "wrong"
    assert "tuple" in check.saved_shapes(lambda d: {"net.0.weight": [24, 12]}).message or \
        check.saved_shapes(lambda d: {"net.0.weight": [24, 12]}).status == "wrong"


def test_no_warnings_leak(recwarn):
    check.saved_shapes(saved_shapes)
    assert not [w for w in recwarn if "torch.distributed" in str(w.message)]
