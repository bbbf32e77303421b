"""Checks for notebooks/11_distributed_checkpoints.ipynb."""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import torch

from . import NotAttempted, Wrong, call_answer, exercise

NB = "11_distributed_checkpoints"


def _make_dcp(folder: Path, seed: int = 11) -> dict[str, torch.Tensor]:
    """Write a single-process DCP checkpoint with ``model`` and ``optim`` entries; return the model's weights."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    from ..models import Net

    torch.manual_seed(seed)
    model = Net(in_features=12, hidden=24, num_classes=3)  # other shapes than the notebook's Net
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model(torch.randn(4, 12)).sum().backward()
    optimizer.step()
    model_sd, optim_sd = get_state_dict(model, optimizer)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.save({"model": model_sd, "optim": optim_sd, "step": 1}, checkpoint_id=folder, no_dist=True)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _whole_checkpoint(dcp_dir, out_path):
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    dcp_to_torch_save(dcp_dir, out_path)


def _prefixed_keys(dcp_dir, out_path):
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    tmp = f"{out_path}.tmp"
    dcp_to_torch_save(dcp_dir, tmp)
    full = torch.load(tmp, weights_only=True)
    torch.save({f"model.{k}": v for k, v in full["model"].items()}, out_path)


def _nothing_written(dcp_dir, out_path):
    return out_path


@exercise("dcp_to_weights", notebook=NB, wrong=[
    (_whole_checkpoint, "only the model"),
    (_prefixed_keys, "prefix"),
    (_nothing_written, "nothing was written"),
])
def dcp_to_weights(fn) -> str:
    """``fn(dcp_dir, out_path)`` writes a torch.save file holding only the model's state_dict."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ckpt"
        expected = _make_dcp(folder)
        out = Path(tmp) / "weights.pth"
        if not callable(fn):
            raise Wrong(f"expected a function, got {type(fn).__name__}; define it with def and pass its name")
        try:
            result = fn(folder, out)
        except NotImplementedError:
            raise NotAttempted from None
        except Exception as e:
            raise Wrong(f"your function raised {type(e).__name__}: {e}") from None
        if not out.exists():
            if result is None:  # a body that is still `pass`
                raise NotAttempted
            raise Wrong("nothing was written to out_path; save the model's state_dict there with torch.save")
        try:
            saved = torch.load(out, map_location="cpu", weights_only=True)
        except Exception as e:
            raise Wrong(f"out_path does not load with torch.load(weights_only=True) ({type(e).__name__}); "
                        "save a plain dict of tensors") from None
    if not isinstance(saved, dict):
        raise Wrong(f"the file holds a {type(saved).__name__}; save the model's state_dict (a dict of tensors)")
    if "model" in saved or "optim" in saved:
        raise Wrong("the file holds the whole checkpoint (model, optim, step); keep only the model entry: full['model']")
    if saved and all(k.startswith("model.") for k in saved):
        raise Wrong("the keys still carry the 'model.' prefix of DCP's flat names; keep the keys of full['model']")
    if set(saved) != set(expected):
        raise Wrong(f"the keys differ from the model's: expected {sorted(expected)}, got {sorted(saved)[:6]}")
    for k, v in expected.items():
        if not isinstance(saved[k], torch.Tensor) or not torch.equal(saved[k], v):
            raise Wrong(f"{k} differs from the weights in the DCP checkpoint")
    return "a weights-only file, ready for model.load_state_dict(torch.load(path, weights_only=True))."


def _with_prefix(dcp_dir):
    import torch.distributed.checkpoint as dcp

    meta = dcp.FileSystemReader(str(dcp_dir)).read_metadata()
    return {k: tuple(v.size) for k, v in meta.state_dict_metadata.items() if k.startswith("model.")}


def _everything(dcp_dir):
    import torch.distributed.checkpoint as dcp

    meta = dcp.FileSystemReader(str(dcp_dir)).read_metadata()
    return {k.split(".", 1)[1]: tuple(v.size) for k, v in meta.state_dict_metadata.items() if hasattr(v, "size")}


def _torch_sizes(dcp_dir):
    import torch.distributed.checkpoint as dcp

    meta = dcp.FileSystemReader(str(dcp_dir)).read_metadata()
    return {k[6:]: list(v.size) for k, v in meta.state_dict_metadata.items() if k.startswith("model.")}


@exercise("saved_shapes", notebook=NB, wrong=[
    (_with_prefix, "without the 'model.' prefix"),
    (_everything, "only the model"),
    (_torch_sizes, "tuple"),
])
def saved_shapes(fn) -> str:
    """``fn(dcp_dir)`` returns {model key without 'model.': global shape tuple}, from .metadata."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ckpt"
        expected = {k: tuple(v.shape) for k, v in _make_dcp(folder).items()}
        answer = call_answer(fn, folder)
    if not isinstance(answer, dict):
        raise Wrong(f"return a dict of key -> shape tuple, got {type(answer).__name__}")
    if any(str(k).startswith("model.") for k in answer):
        raise Wrong("give the keys without the 'model.' prefix, as model.state_dict() names them (e.g. 'net.0.weight')")
    if set(answer) - set(expected):
        raise Wrong(f"{sorted(set(answer) - set(expected))[0]!r} is not a model entry; keep only the model's "
                    "keys (those starting with 'model.')")
    if set(expected) - set(answer):
        raise Wrong(f"{sorted(set(expected) - set(answer))[0]!r} is missing")
    for k, shape in expected.items():
        if not isinstance(answer[k], tuple):
            raise Wrong(f"give each shape as a tuple, e.g. {shape}; got {type(answer[k]).__name__} for {k!r}")
        if answer[k] != shape:
            raise Wrong(f"{k}: expected the global shape {shape}, got {answer[k]}")
    return "the model's shapes, read from .metadata without loading a tensor."
