"""Checks for notebooks/09_safetensors.ipynb."""
from __future__ import annotations

import contextlib

import tempfile
from pathlib import Path
from unittest import mock

import torch

from . import Wrong, call_answer, exercise

NB = "09_safetensors"


def _tied_state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    emb = torch.randn(10, 4)
    return {"emb.weight": emb, "head.weight": emb, "head.bias": torch.zeros(10)}


def _no_metadata(sd, path, epoch):
    from safetensors.torch import save_file

    save_file({k: v.clone() for k, v in sd.items()}, path)
    return path


def _int_metadata(sd, path, epoch):
    from safetensors.torch import save_file

    save_file({k: v.clone() for k, v in sd.items()}, path, metadata={"epoch": epoch})
    return path


def _keeps_ties(sd, path, epoch):
    from safetensors.torch import save_file

    save_file(dict(sd), path, metadata={"epoch": str(epoch)})
    return path


def _drops_tied(sd, path, epoch):
    from safetensors.torch import save_file

    save_file({k: v for k, v in sd.items() if k != "head.weight"}, path, metadata={"epoch": str(epoch)})
    return path


@exercise("save_with_epoch", notebook=NB, wrong=[
    (_no_metadata, "metadata"),
    (_int_metadata, "strings"),
    (_keeps_ties, "share memory"),
    (_drops_tied, "missing"),
])
def save_with_epoch(fn) -> str:
    """``fn(state_dict, path, epoch)`` writes safetensors with metadata {"epoch": str(epoch)}; returns path."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    sd = _tied_state_dict()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.safetensors"
        try:
            out = call_answer(fn, sd, path, 7)
        except Wrong as w:
            text = str(w)
            if "not an instance of 'str'" in text or "metadata" in text:
                raise Wrong("metadata values must be strings: write metadata={'epoch': str(epoch)}") from None
            if "share memory" in text:
                raise Wrong("save_file refuses tensors that share memory (the tied entries); save a copy "
                            "of each, e.g. {k: v.clone() for k, v in state_dict.items()}") from None
            raise
        if not path.exists():
            raise Wrong("nothing was written to path; call save_file(tensors, path, metadata=...)")
        if Path(out) != path:
            raise Wrong("return the path you wrote")
        back = load_file(path)
        missing = sorted(set(sd) - set(back))
        if missing:
            raise Wrong(f"{missing[0]!r} is missing from the file: keep every key, tied ones included")
        if not all(torch.equal(back[k], v) for k, v in sd.items()):
            raise Wrong("a tensor in the file differs from the state_dict")
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
    if meta.get("epoch") != "7":
        raise Wrong(f"the header metadata should hold epoch '7', got {meta or 'no metadata'}; "
                    "pass metadata={'epoch': str(epoch)} to save_file")
    return "every key is in the file, and the header says epoch 7."


def _uses_load_file(path, key):
    from safetensors.torch import load_file

    return load_file(path)[key]


def _returns_dict(path, key):
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        return {key: f.get_tensor(key)}


def _wrong_key(path, key):
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        return f.get_tensor(sorted(f.keys())[0])


@exercise("read_one_tensor", notebook=NB, wrong=[
    (_uses_load_file, "every tensor"),
    (_returns_dict, "just the tensor"),
    (_wrong_key, "different tensor"),
])
def read_one_tensor(fn) -> str:
    """``fn(path, key)`` returns one tensor from a .safetensors file without load_file."""
    import safetensors.torch as st

    torch.manual_seed(0)
    tensors = {"a.weight": torch.randn(3, 4), "b.weight": torch.randn(5), "c.bias": torch.arange(6.0)}

    def refuse(*args, **kwargs):
        raise RuntimeError("load_file reads every tensor")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.safetensors"
        st.save_file(tensors, path)
        # Refuse the whole-file readers both in safetensors.torch and under any name the
        # learner's code imported them as (``from safetensors.torch import load_file``).
        originals = (st.load_file, st.load)
        aliases = [name for name, value in getattr(fn, "__globals__", {}).items()
                   if any(value is o for o in originals)]
        with contextlib.ExitStack() as stack:
            stack.enter_context(mock.patch.object(st, "load_file", refuse))
            stack.enter_context(mock.patch.object(st, "load", refuse))
            for name in aliases:
                stack.enter_context(mock.patch.dict(fn.__globals__, {name: refuse}))
            try:
                out = call_answer(fn, path, "b.weight")
            except Wrong as w:
                if "load_file reads every tensor" in str(w):
                    raise Wrong("load_file reads every tensor in the file; open it with safe_open and "
                                "call get_tensor(key)") from None
                raise
    if isinstance(out, dict):
        raise Wrong("return just the tensor, not a dict")
    if not isinstance(out, torch.Tensor):
        raise Wrong(f"return a tensor, got {type(out).__name__}")
    if not torch.equal(out, tensors["b.weight"]):
        raise Wrong("that is a different tensor: use the key you were given")
    return "one tensor read through the header, the others never loaded."
