"""Checks for notebooks/11_distributed_checkpoints.ipynb: DCP checkpoints written by one process and
as two ranks would (uneven chunks), of a model with buffers, a submodule named ``model.`` inside and
a ``model_ema`` entry beside ``model``, so that prefix handling by substring goes wrong."""

from __future__ import annotations

import dataclasses
import functools
import pickle
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from . import Case, Wrong, behaves_like, crash, exercise, run_answer
from .fixtures import named

NB = "11_distributed_checkpoints"


def _train_state(seed: int, width: int, classes: int) -> tuple[dict[str, Any], dict]:
    """A trained model's ``{"model", "model_ema", "optim", "step"}`` (as get_state_dict gives
    them) and its weights. Keys: submodel.0.*, submodel.1.* (BatchNorm, buffers included),
    decoder.*: "model.decoder" loses letters to str.lstrip("model.")."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    torch.manual_seed(seed)
    submodel = nn.Sequential(nn.Linear(6, width), nn.BatchNorm1d(width))
    model = named(submodel=submodel, relu=nn.ReLU(), decoder=nn.Linear(width, classes))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model(torch.randn(8, 6)).sum().backward()
    optimizer.step()
    model_sd, optim_sd = get_state_dict(model, optimizer)
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ema = {k: v * 0.5 for k, v in weights.items() if k.startswith("decoder.")}
    return {"model": model_sd, "model_ema": ema, "optim": optim_sd, "step": 1}, weights


def _save_sharded(folder: Path, state: dict[str, Any], world: int = 2) -> None:
    """Write ``state`` as ``world`` ranks would (a ``__<rank>_0.distcp`` each, tensors with at least
    ``world`` rows split by rows, the rest written by rank 0): single-process saves, indexes merged."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import ChunkStorageMetadata as Chunk
    from torch.distributed.checkpoint.metadata import MetadataIndex as Index
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    def local(obj: Any, rank: int) -> Any:
        if isinstance(obj, dict):
            kept = {k: local(v, rank) for k, v in obj.items()}
            return {k: v for k, v in kept.items() if v is not None}
        if isinstance(obj, torch.Tensor) and obj.dim() >= 1 and obj.shape[0] >= world:
            return obj.tensor_split(world)[rank].clone()
        return obj if rank == 0 else None

    folder.mkdir(parents=True)
    parts = []
    with tempfile.TemporaryDirectory() as tmp:
        for rank in range(world):
            sub = Path(tmp) / str(rank)
            dcp.save(local(state, rank), checkpoint_id=sub, no_dist=True)
            (sub / "__0_0.distcp").rename(folder / f"__{rank}_0.distcp")
            parts.append(pickle.loads((sub / ".metadata").read_bytes()))  # written a line above
    meta = parts[0]
    for key, item in list(meta.state_dict_metadata.items()):
        if not isinstance(item, TensorStorageMetadata) or key not in parts[-1].state_dict_metadata:
            continue
        chunks, row = [], 0
        for rank, part in enumerate(parts):
            size = part.state_dict_metadata[key].size
            offsets = torch.Size([row] + [0] * (len(size) - 1))
            chunks.append(Chunk(offsets=offsets, sizes=size))
            info = part.storage_data[Index(key, torch.Size([0] * len(size)))]
            meta.storage_data[Index(key, offsets)] = dataclasses.replace(
                info, relative_path=f"__{rank}_0.distcp"
            )
            row += size[0]
        meta.state_dict_metadata[key] = TensorStorageMetadata(
            item.properties, torch.Size([row, *item.size[1:]]), chunks
        )
    (folder / ".metadata").write_bytes(pickle.dumps(meta))


#: (name, sharded?, seed, width, classes). Widths: odd row counts give chunks of unequal sizes.
_CASES = [("one process", False, 11, 10, 3), ("two ranks", True, 12, 9, 5)]


def _checkpoints(root: Path) -> list[tuple[str, Path, dict]]:
    """``(label, folder, model weights)`` for each case, written under ``root``."""
    import torch.distributed.checkpoint as dcp

    made = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        for label, sharded, seed, width, classes in _CASES:
            state, weights = _train_state(seed, width, classes)
            folder = root / label.replace(" ", "_")
            if sharded:
                _save_sharded(folder, state)
            else:
                dcp.save(state, checkpoint_id=folder, no_dist=True)
            made.append((label, folder, weights))
    return made


def _listing(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in folder.iterdir()}


def _checkpoint_failure(w: Wrong) -> str | None:
    """The last line of a CheckpointException's message (it wraps a traceback per rank), or None."""
    text = str(w)
    if "CheckpointException" not in text:
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if len(lines) > 1 else "dcp.load failed"


def _weights_file_hint(out: Path, expected: dict[str, torch.Tensor], label: str) -> str | None:
    try:
        saved = torch.load(out, map_location="cpu", weights_only=True)
    except Exception as e:
        return f"out_path does not load with torch.load(weights_only=True) ({type(e).__name__}); save a plain dict of tensors"
    if not isinstance(saved, dict):
        return f"the file holds a {type(saved).__name__}; save the model's state_dict (a dict of tensors)"
    if set(saved) == {"model"} and isinstance(saved["model"], dict):
        return "the file holds {'model': weights}, the weights one level too deep: save full['model'] itself, so that model.load_state_dict(torch.load(path)) takes it as it is"
    if {"model", "optim"} & set(saved):
        return "the file holds the whole checkpoint (model, optim, step); keep only the model entry: full['model']"
    if saved and all(str(k).startswith("model.") for k in saved):
        return "the keys still carry the 'model.' prefix of DCP's flat names; keep the keys of full['model']"
    at = f"with the {label} checkpoint,"
    missing, extra = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
    if saved and not set(saved) & set(expected):
        return f"{at} the file holds the weights of another model (keys like {sorted(saved)[0]!r}; this checkpoint's model has {sorted(expected)[0]!r}): convert the folder you were given, dcp_dir, with dcp_to_torch_save"
    if missing:
        buffers = all("running_" in k or "num_batches" in k for k in missing)
        more = " (BatchNorm buffers are part of a state_dict too: keep every entry)"
        return f"{at} {missing[0]!r} is missing from the file{more if buffers else ''}"
    if extra:
        return f"{at} the file has {extra[0]!r}, which is not a model key"
    for k, v in expected.items():
        got = saved[k]
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        if shape != tuple(v.shape):
            return f"{at} {k} has shape {shape}, the model's is {tuple(v.shape)}: save whole tensors (dcp_to_torch_save stitches the chunks together)"
        if not torch.equal(got, v):
            return f"{at} {k} differs from the weights saved in it: take the 'model' entry of this checkpoint, nothing else"
    return None


@exercise("dcp_to_weights", notebook=NB)
def dcp_to_weights(fn) -> str:
    """``fn(dcp_dir, out_path)`` writes a torch.save file holding only the model's state_dict."""
    with tempfile.TemporaryDirectory() as tmp:
        for label, folder, expected in _checkpoints(Path(tmp) / "checkpoints"):
            out_dir = Path(tmp) / f"out_{folder.name}"
            out_dir.mkdir()
            out = out_dir / "weights.pth"
            before = _listing(folder)
            try:
                run_answer(fn, folder, out)
            except Wrong as w:
                cause = _checkpoint_failure(w)
                if cause:
                    why = "the check's checkpoints hold a model with other keys and shapes than the notebook's Net, so a model built in advance does not fit; convert"
                    if "size mismatch" in cause.lower():
                        why = "dcp.load fills tensors of each entry's whole shape (its .size; a tensor saved by two ranks is stored in smaller chunks); simpler: convert"
                    raise Wrong(
                        f"with the {label} checkpoint, your function raised CheckpointException ({cause}): {why} with dcp_to_torch_save and keep the 'model' entry"
                    ) from None
                raise
            if not out.exists():
                raise Wrong(
                    "nothing was written to out_path; save the model's state_dict there with torch.save"
                )
            left = sorted(p.name for p in out_dir.iterdir() if p != out)
            if left:
                raise Wrong(
                    f"your function left {left[0]!r} next to out_path: remove the temporary file once the weights are saved (os.remove)"
                )
            if _listing(folder) != before:
                raise Wrong("your function changed the checkpoint folder; write only to out_path")
            if hint := _weights_file_hint(out, expected, label):
                raise Wrong(hint)
    return "a weights-only file from both checkpoints (one process, two ranks), ready for model.load_state_dict(torch.load(path, weights_only=True))."


def _readers() -> dict:
    """What reads tensor data (torch.load also reads .distcp bytes by hand), by name."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.filesystem import FileSystemReader

    return {
        FileSystemReader.read_data: "FileSystemReader.read_data",
        dcp.load: "dcp.load",
        torch.serialization.load: "torch.load",
    }


def _entries(folder: Path) -> dict:
    from torch.distributed.checkpoint import FileSystemReader

    meta = FileSystemReader(str(folder)).read_metadata().state_dict_metadata
    return {k: v for k, v in meta.items() if hasattr(v, "size")}


def _shapes(folder: Path, key=lambda k: k.removeprefix("model."), size=lambda v: tuple(v.size)):
    """The reference (with the defaults); a known mistake with another ``key`` or ``size``."""
    return {key(k): size(v) for k, v in _entries(folder).items() if k.startswith("model.")}


def _tuples(out: Any, args: tuple) -> Any:
    """The answer, with a shape that is not a tuple (``torch.Size`` is one) marked by its type."""
    if not isinstance(out, dict):
        return type(out).__name__
    return {k: v if isinstance(v, tuple) else (type(v).__name__, v) for k, v in out.items()}


_CHUNK = "a tensor saved by several ranks has several chunks; the entry's .size is the whole tensor's shape, a chunk's .sizes only its part"
# fmt: off
_SHAPE_MISTAKES = [
    (lambda d: _shapes(d, key=str), "give the keys without the 'model.' prefix, as model.state_dict() names them (e.g. 'decoder.weight')"),
    (lambda d: {k.split(".", 1)[1]: tuple(v.size) for k, v in _entries(d).items()}, "the checkpoint also holds 'optim' and 'model_ema' entries: keep only the model's keys (those starting with 'model.'), without the prefix"),
    (lambda d: _shapes(d, key=lambda k: k.lstrip("model.")), "for the key 'model.decoder.weight' you returned 'coder.weight': str.lstrip('model.') strips any of the characters m, o, d, e, l and '.', not the prefix; use k.removeprefix('model.') or k[len('model.'):]"),
    (lambda d: _shapes(d, key=lambda k: k.replace("model.", "")), "'model.' also appears in the middle of a key (a submodule named 'submodel': 'model.submodel.0.weight' became 'sub0.weight'); remove the prefix at the start only (k[len('model.'):] or removeprefix)"),
    (lambda d: {k[6:]: tuple(v.size) for k, v in _entries(d).items() if k.startswith("model")}, "the checkpoint also has a 'model_ema' entry, whose keys start with 'model_ema.': test for the prefix with its dot, k.startswith('model.')"),
    (lambda d: _shapes(d, size=lambda v: list(v.size)), "give each shape as a tuple: (10, 6) for 'submodel.0.weight', tuple(v.size), not the list [10, 6]"),
    (lambda d: _shapes(d, size=lambda v: tuple(v.chunks[0].sizes)), f"with the two ranks checkpoint you gave 'submodel.0.weight' the shape (5, 6), its first chunk; the whole tensor is (9, 6): {_CHUNK}"),
    (lambda d: _shapes(d, size=lambda v: tuple(map(sum, zip(*(c.sizes for c in v.chunks))))), f"with the two ranks checkpoint you gave 'submodel.0.weight' the shape (9, 12), the chunks' sizes added up (the columns, not split, counted twice); the whole tensor is (9, 6): {_CHUNK}"),
    (lambda d: {k: tuple(v.shape) for k, v in _notebook_net().state_dict().items()}, "none of your keys is in the checkpoint you were given (its model has 'decoder.weight', not the notebook's Net): read the shapes from dcp_dir's .metadata, not from a model of your own"),
]
# fmt: on


def _notebook_net() -> nn.Module:
    from ..models import Net

    return Net()


@exercise("saved_shapes", notebook=NB)
def saved_shapes(fn) -> str:
    """``fn(dcp_dir)`` returns {model key without 'model.': global shape tuple}, from .metadata only."""
    readers = _readers()
    with tempfile.TemporaryDirectory() as tmp:
        cases = [
            Case(f"the {label} checkpoint", functools.partial(tuple, [folder]), _tuples)
            for label, folder, _ in _checkpoints(Path(tmp))
        ]
        wrong = None
        with crash.watching(*readers) as seen:
            try:
                behaves_like(fn, _shapes, cases, _SHAPE_MISTAKES)
            except Wrong as w:
                wrong = w
    reads = [readers[f] for _, f in seen.order]
    if reads:
        failed = f", and it failed ({_checkpoint_failure(wrong) or wrong})" if wrong else ""
        raise Wrong(
            f"your function read tensor data ({reads[0]} ran){failed}: the shapes are all in .metadata; read only the index, dcp.FileSystemReader(str(dcp_dir)).read_metadata()"
        )
    if wrong is not None:
        raise wrong
    return "the model's global shapes, sharded or not, read from .metadata without reading tensor data (only ever for folders your own jobs wrote: reading .metadata unpickles it)."
