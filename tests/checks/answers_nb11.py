"""Wrong and right answers for the checks in labs_utils/checks/nb11.py (test data):
WRONG pairs an answer with a piece of the hint it must get; RIGHT lists answers that pass."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import torch


def _whole_checkpoint(dcp_dir, out_path):
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    dcp_to_torch_save(dcp_dir, out_path)


def _prefixed_keys(dcp_dir, out_path):
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    tmp = f"{out_path}.tmp"
    dcp_to_torch_save(dcp_dir, tmp)
    full = torch.load(tmp, weights_only=True)
    torch.save({f"model.{k}": v for k, v in full["model"].items()}, out_path)
    os.remove(tmp)


def _nothing_written(dcp_dir, out_path):
    return out_path


def _loads_into_notebook_net(dcp_dir, out_path):
    """dcp.load into the notebook's Net: the check's checkpoints have other shapes."""
    from labs_utils.models import Net
    from labs_utils.workers.dcp_workers import load_single_process

    model = Net()
    load_single_process(model, None, dcp_dir)
    torch.save(model.state_dict(), out_path)


def _leaves_temp_file(dcp_dir, out_path):
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    tmp = f"{out_path}.full.tmp"
    dcp_to_torch_save(dcp_dir, tmp)
    torch.save(torch.load(tmp, weights_only=True)["model"], out_path)


def _parameters_only(dcp_dir, out_path):
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    tmp = f"{out_path}.full.tmp"
    dcp_to_torch_save(dcp_dir, tmp)
    model = torch.load(tmp, weights_only=True)["model"]
    os.remove(tmp)
    torch.save({k: v for k, v in model.items() if k.endswith(("weight", "bias"))}, out_path)


def _ema_weights(dcp_dir, out_path):
    """Keeps every entry whose key starts with "model" (no dot): model_ema overwrites the head."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    tmp = f"{out_path}.full.tmp"
    dcp_to_torch_save(dcp_dir, tmp)
    full = torch.load(tmp, weights_only=True)
    os.remove(tmp)
    weights = {}
    for entry, value in full.items():
        if entry.startswith("model"):
            weights.update(value)
    torch.save(weights, out_path)


def _first_chunk_only(dcp_dir, out_path):
    """Reads each tensor's bytes from rank 0's file only: half of every sharded tensor."""
    import torch.distributed.checkpoint as dcp

    meta = dcp.FileSystemReader(str(dcp_dir)).read_metadata()
    state = {
        "model": {
            k[len("model.") :]: torch.zeros(tuple(v.chunks[0].sizes))
            for k, v in meta.state_dict_metadata.items()
            if k.startswith("model.") and hasattr(v, "chunks")
        }
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.load(state, checkpoint_id=dcp_dir, no_dist=True)
    torch.save(state["model"], out_path)


def _converts_then_overwrites(dcp_dir, out_path):
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    dcp_to_torch_save(dcp_dir, out_path)
    torch.save(torch.load(out_path, weights_only=True)["model"], out_path)


def _by_loading(dcp_dir, out_path):
    """Builds a model from the shapes in .metadata and loads into it with dcp.load."""
    import torch.distributed.checkpoint as dcp

    meta = dcp.FileSystemReader(str(dcp_dir)).read_metadata()
    state = {
        "model": {
            k[len("model.") :]: torch.empty(tuple(v.size), dtype=v.properties.dtype)
            for k, v in meta.state_dict_metadata.items()
            if k.startswith("model.") and hasattr(v, "size")
        }
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.load(state, checkpoint_id=dcp_dir, no_dist=True)
    torch.save(state["model"], out_path)


def _in_a_temporary_folder(dcp_dir, out_path):
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    with tempfile.TemporaryDirectory(dir=Path(out_path).parent) as tmp:
        dcp_to_torch_save(dcp_dir, Path(tmp) / "full.pth")
        torch.save(torch.load(Path(tmp) / "full.pth", weights_only=True)["model"], out_path)


def _read_metadata(dcp_dir):
    import torch.distributed.checkpoint as dcp

    return dcp.FileSystemReader(str(dcp_dir)).read_metadata().state_dict_metadata


def _with_prefix(dcp_dir):
    return {k: tuple(v.size) for k, v in _read_metadata(dcp_dir).items() if k.startswith("model.")}


def _everything(dcp_dir):
    return {
        k.split(".", 1)[1]: tuple(v.size)
        for k, v in _read_metadata(dcp_dir).items()
        if hasattr(v, "size")
    }


def _torch_sizes(dcp_dir):
    return {
        k[6:]: list(v.size) for k, v in _read_metadata(dcp_dir).items() if k.startswith("model.")
    }


def _first_chunk(dcp_dir):
    return {
        k[6:]: tuple(v.chunks[0].sizes)
        for k, v in _read_metadata(dcp_dir).items()
        if k.startswith("model.")
    }


def _replace_prefix(dcp_dir):
    return {
        k.replace("model.", ""): tuple(v.size)
        for k, v in _read_metadata(dcp_dir).items()
        if k.startswith("model.")
    }


def _no_dot(dcp_dir):
    return {
        k[6:]: tuple(v.size) for k, v in _read_metadata(dcp_dir).items() if k.startswith("model")
    }


def _by_converting(dcp_dir):
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    with tempfile.TemporaryDirectory() as tmp:
        dcp_to_torch_save(dcp_dir, Path(tmp) / "full.pth")
        full = torch.load(Path(tmp) / "full.pth", weights_only=True)
    return {k: tuple(v.shape) for k, v in full["model"].items()}


def _by_loading_the_notebook_net(dcp_dir):
    from labs_utils.models import Net
    from labs_utils.workers.dcp_workers import load_single_process

    model = Net()
    load_single_process(model, None, dcp_dir)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _by_loading_exact_shapes(dcp_dir):
    import torch.distributed.checkpoint as dcp

    meta = _read_metadata(dcp_dir)
    state = {
        "model": {
            k[6:]: torch.empty(tuple(v.size))
            for k, v in meta.items()
            if k.startswith("model.") and hasattr(v, "size")
        }
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.load(state, checkpoint_id=dcp_dir, no_dist=True)
    return {k: tuple(v.shape) for k, v in state["model"].items()}


def _summed_chunks(dcp_dir):
    return {
        k[6:]: tuple(sum(c.sizes[d] for c in v.chunks) for d in range(len(v.size)))
        for k, v in _read_metadata(dcp_dir).items()
        if k.startswith("model.") and hasattr(v, "chunks")
    }


def _removeprefix_torch_size(dcp_dir):
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    meta = FileSystemReader(Path(dcp_dir)).read_metadata()
    return {
        k.removeprefix("model."): v.size
        for k, v in meta.state_dict_metadata.items()
        if k.startswith("model.") and isinstance(v, TensorStorageMetadata)
    }


def _chunk_extents(dcp_dir):
    out = {}
    for k, v in _read_metadata(dcp_dir).items():
        if k.startswith("model.") and hasattr(v, "chunks"):
            out[k[len("model.") :]] = tuple(
                max(c.offsets[d] + c.sizes[d] for c in v.chunks) for d in range(len(v.size))
            )
    return out


WRONG = {
    "dcp_to_weights": [
        (_whole_checkpoint, "only the model"),
        (_prefixed_keys, "prefix"),
        (_nothing_written, "nothing was written"),
        (_loads_into_notebook_net, "other keys and shapes"),
        (_leaves_temp_file, "left"),
        (_parameters_only, "buffers"),
        (_ema_weights, "differs from the weights"),
        (_first_chunk_only, "whole shape"),
    ],
    "saved_shapes": [
        (_with_prefix, "without the 'model.' prefix"),
        (_everything, "only the model"),
        (_torch_sizes, "tuple"),
        (_first_chunk, "chunk"),
        (_replace_prefix, "in the middle"),
        (_no_dot, "model_ema"),
        (_by_converting, "read tensor data"),
        (_by_loading_the_notebook_net, "read tensor data"),
        (_by_loading_exact_shapes, "read tensor data"),
        (_summed_chunks, "chunk"),
    ],
}
RIGHT = {
    "dcp_to_weights": [_converts_then_overwrites, _by_loading, _in_a_temporary_folder],
    "saved_shapes": [_removeprefix_torch_size, _chunk_extents],
}
