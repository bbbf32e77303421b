"""Checks for notebooks/09_safetensors.ipynb."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from . import Wrong, call_answer, exercise, explained, run_answer, same
from .fixtures import changed_keys, named, replaced, scratch_file, snapshot

NB = "09_safetensors"


def _tied_lm() -> nn.Module:
    """The notebook's pattern with other sizes: the output layer is the embedding."""
    model = named(emb=nn.Embedding(12, 4), head=nn.Linear(4, 12, bias=False))
    model.head.weight = model.emb.weight
    return model


def _encoder_decoder() -> nn.Module:
    """Other names for the tie, a layer that is not tied, and a persistent buffer."""
    model = named(
        encoder=nn.Sequential(nn.Embedding(9, 6), nn.LayerNorm(6)), decoder=nn.Linear(6, 9)
    )
    model.decoder.weight = model.encoder[0].weight
    model.register_buffer("position_ids", torch.arange(5))
    return model


_MODELS = [  # (factory, the two names of the tie, epoch)
    (_tied_lm, ("emb.weight", "head.weight"), 7),
    (_encoder_decoder, ("encoder.0.weight", "decoder.weight"), 12),
]


def _tied(model: nn.Module, names: tuple[str, str]) -> bool:
    return model.get_parameter(names[0]) is model.get_parameter(names[1])


def _saved_file_hint(
    out: Any, path: Path, model: nn.Module, before: dict, cls: type, tie: tuple, epoch: int
) -> str | None:
    """What is wrong with the file an answer wrote at ``path`` (and what it returned), if anything."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_model

    if not path.exists():
        return "nothing was written to path; call save_model(model, path, metadata=...)"
    if out is None:
        return "the file is written, but your function returned None: end it with `return path`"
    if Path(out) != path:
        return f"return the path you wrote ({path.name}), got {out!r}"
    if not _tied(model, tie) or changed_keys(model, before):
        return "your function changed the model (its weights or its tie); save it as it is"
    try:
        with safe_open(path, framework="pt") as f:
            stored, meta = set(f.keys()), f.metadata() or {}
    except SafetensorError as e:
        return f"the file is not a safetensors file ({e}); torch.save writes a zip of pickles: use save_model from safetensors.torch"
    if all(n in stored for n in tie):
        return f"the file stores {tie[0]!r} and {tie[1]!r}: the same tied tensor twice (clone() copies it: twice the bytes, and load_file gives two independent tensors); store it once: save_model(model, path, metadata=...)"
    if meta.get("epoch") != str(epoch):
        keys = [f"a key {k!r}" for k in sorted(meta) if k.lower() == "epoch"]
        seen = (keys or [dict(sorted(meta.items())) or "no metadata"])[0]
        return f"the header metadata should hold 'epoch': '{epoch}', got {seen}; pass metadata={{'epoch': str(epoch)}}"
    fresh = cls()
    try:
        load_model(fresh, path)
    except Exception as e:
        return f"load_model into a fresh copy of the check's {cls.__name__[1:]} model fails ({type(e).__name__}: {str(e).strip()[:200]}); keep every entry except the second name of a tie"
    if not _tied(fresh, tie) or changed_keys(fresh, before):
        return "load_model gives other weights than the model's; save the model's own tensors"
    return None


@exercise("save_with_epoch", notebook=NB)
def save_with_epoch(fn) -> str:
    """``fn(model, path, epoch)`` writes safetensors with each shared tensor once and metadata
    {"epoch": str(epoch)}, and returns path; ``load_model`` gives the weights back, still tied."""
    for i, (cls, tie, epoch) in enumerate(_MODELS):
        torch.manual_seed(i)
        model = cls()
        before = snapshot(model)
        with scratch_file("w.safetensors") as path:
            strings = "metadata values must be strings: metadata={'epoch': str(epoch)}"
            tied = f"save_file refused the tied weights of the check's {cls.__name__[1:]} model ({' and '.join(tie)} are one tensor); save_model stores each shared tensor once: save_model(model, path, metadata=...)"
            with explained("not an instance of 'str'", strings), explained("share memory", tied):
                out = run_answer(fn, model, path, epoch)
            if hint := _saved_file_hint(out, path, model, before, cls, tie, epoch):
                raise Wrong(hint)
    return "each shared tensor stored once, the epoch in the header, and load_model gives the tied model back."


class _CountingHandle:
    """Wraps a ``safe_open`` handle and records the names of the tensors read through it."""

    def __init__(self, real: Any, reads: list[str]) -> None:
        self._real, self._reads = real, reads

    def __enter__(self) -> _CountingHandle:
        self._real.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._real.__exit__(*exc)

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._real, name)
        if name in ("get_tensor", "get_slice"):
            return lambda key: self._reads.append(key) or real(key)
        if name == "get_tensors":
            self._reads.extend(self._real.keys())
        return real


_READS_ALL = {
    "load_file": "load_file reads every tensor in the file (torch.load hands a .safetensors file to it too); open the file with safe_open and call get_tensor(key)",
    "load": "safetensors.torch.load(data) builds every tensor of the file from its bytes; open the file with safe_open and call get_tensor(key)",
}


@contextlib.contextmanager
def _counted_reads(fn: Any):
    """While a learner's function runs: count the tensors read through ``safe_open`` (under any name
    the learner imported it as) and refuse the whole-file readers ``load_file`` and ``load``."""
    import safetensors
    import safetensors.torch as st

    real_open, reads = safetensors.safe_open, []

    def refuse(name: str) -> Any:
        def refused(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(f"{name} reads every tensor")

        return refused

    counting = lambda *a, **k: _CountingHandle(real_open(*a, **k), reads)
    refusals = {name: refuse(name) for name in _READS_ALL}
    with contextlib.ExitStack() as stack:
        stack.enter_context(replaced(fn, (safetensors, st), safe_open=counting, **refusals))
        for name, hint in _READS_ALL.items():  # the refusal, as a hint
            stack.enter_context(explained(f": {name} reads every tensor", hint))
        yield reads


@exercise("read_one_tensor", notebook=NB)
def read_one_tensor(fn) -> str:
    """``fn(path, key)`` returns one tensor from a .safetensors file, reading no other tensor."""
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(0)
    # "a.b.weight" sorts before "b.weight" and contains it; mixed dtypes and shapes
    tensors = {
        "a.b.weight": torch.randn(3, 4, generator=gen),
        "b.weight": torch.randn(5, generator=gen),
        "c.bias": torch.arange(6.0),
        "d.index": torch.arange(4),
        "e.half": torch.randn(2, 2).half(),
    }
    with scratch_file("w.safetensors") as path:
        save_file(tensors, path)
        answers = []
        for key in ("b.weight", "e.half", "a.b.weight"):
            with _counted_reads(fn) as reads:
                answers.append((key, call_answer(fn, path, key), reads))
        got = [_which(out, tensors) for _, out, _ in answers]
        if got[0] is not None and got[0] == got[1]:  # 'b.weight' and 'e.half': unrelated keys
            raise Wrong(
                f"you returned {got[0]!r} for the keys {answers[0][0]!r} and {answers[1][0]!r} alike: your function returns the same tensor whatever key it is given; read the one named by key, f.get_tensor(key)"
            )
        for key, out, reads in answers:
            if hint := _one_tensor_hint(out, key, tensors, reads):
                raise Wrong(hint)
    return "one tensor read through the header each time, the others never loaded."


def _which(out: Any, tensors: dict[str, torch.Tensor]) -> str | None:
    """The key of the file's tensor that ``out`` equals, if any."""
    return next((k for k, v in tensors.items() if same(out, v)), None)


def _one_tensor_hint(
    out: Any, key: str, tensors: dict[str, torch.Tensor], reads: list[str]
) -> str | None:
    if isinstance(out, dict):
        return "return just the tensor, not a dict"
    if type(out).__name__ == "PySafeSlice":
        return "get_slice(key) gives a lazy slice object; index it ([:] for all of it) or use get_tensor(key)"
    if not isinstance(out, torch.Tensor):
        numpy = type(out).__module__ == "numpy"
        hint = ' (open the file with framework="pt" to get torch tensors)' if numpy else ""
        return f"return a tensor, got {type(out).__name__}{hint}"
    others = sorted(set(reads) - {key})
    if len(set(reads)) > 1 and others:
        return f"your function read {len(set(reads))} tensors to return {key!r} (also {others[0]!r}): get_tensor(key) reads only that one; do not call it for every key"
    if not same(out, tensors[key]):
        took = _which(out, tensors)
        also = "" if took is None else f" (you returned {took!r})"
        if took is not None and key in took:
            also = f" (you returned {took!r}; match the name exactly, not a key that contains it)"
        return f"that is a different tensor from {key!r}: use the key you were given, exactly{also}"
    return None
