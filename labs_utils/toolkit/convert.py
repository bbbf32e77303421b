"""Convert a ``torch.save`` state_dict (or a training checkpoint's weights) to safetensors.

The header says where the weights came from (``format: pt``, ``source``, ``source_entry``,
``stripped_prefixes``); a checkpoint's top-level numbers and strings go under ``ckpt.``
(``ckpt.epoch``), so they never overwrite those keys.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .checkpoints import CheckpointError, atomic_write, load_checkpoint
from .inputs import weights_entry
from .inspector import InspectError, shared_storages
from .prefixes import detect_prefixes, partial_prefixes

__all__ = ["ConvertResult", "convert_to_safetensors"]


@dataclass
class ConvertResult:
    """What ``convert_to_safetensors`` wrote; ``str()`` gives it in a few lines."""

    src: str
    dst: str
    entry: str  # "" when src is a state_dict, else the checkpoint key the weights came from
    tensors: int
    file_bytes: int
    stripped: list[str] = field(default_factory=list)
    untied: list[str] = field(default_factory=list)  # keys written as copies of a shared tensor
    metadata: dict[str, str] = field(default_factory=dict)
    kept_prefixes: dict[str, int] = field(default_factory=dict)  # prefix -> keys that carry it
    strip_prefixes: bool = False  # whether stripping was asked for

    def __repr__(self) -> str:
        where = f"{self.src}[{self.entry!r}]" if self.entry else self.src
        out = [f"wrote {self.dst}: {self.tensors} tensors from {where} ({self.file_bytes:,} bytes)"]
        if self.stripped:
            out.append("stripped prefixes: " + ", ".join(self.stripped))
        elif self.strip_prefixes:
            out.append("stripped prefixes: none (no wrapper prefix starts every key)")
        for p, n in self.kept_prefixes.items():
            out.append(
                f"kept {p!r} on {n} of {self.tensors} keys: not every key has it, so it is part of the "
                "model's own names (a submodule called that)"
            )
        copied = [k for k in self.metadata if k.startswith(_CKPT)]
        if copied:
            out.append(
                "checkpoint values in the header: "
                + ", ".join(f"{k}={_short(self.metadata[k])}" for k in copied)
            )
        if self.untied:
            out.append("shared tensors written as separate copies: " + ", ".join(self.untied))
        out.append("round trip: every tensor is torch.equal to the source")
        return "\n".join(out)


_CKPT = "ckpt."  # namespace of the checkpoint's own values in the header


def _short(value: str, width: int = 40) -> str:
    return value if len(value) <= width else value[: width - 3] + "..."


def convert_to_safetensors(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    strip_prefixes: bool = False,
    overwrite: bool = False,
) -> ConvertResult:
    """Write the weights of ``src`` (a ``.pth``/``.pt`` file) to ``dst`` (``.safetensors``).

    ``src`` is loaded safely; ``dst`` is written atomically (never over an existing file unless
    ``overwrite=True``) and checked with ``torch.equal``. ``strip_prefixes=True`` removes the
    wrapper prefixes that every key carries, and only those.

    Example::

        >>> import tempfile, torch
        >>> from pathlib import Path
        >>> from labs_utils.toolkit import convert_to_safetensors, save_checkpoint
        >>> tmp = tempfile.TemporaryDirectory()
        >>> weights = {"module." + k: v for k, v in torch.nn.Linear(2, 3).state_dict().items()}
        >>> src = save_checkpoint({"model": weights, "epoch": 3}, Path(tmp.name) / "last.pth")
        >>> dst = Path(tmp.name) / "model.safetensors"
        >>> result = convert_to_safetensors(src, dst, strip_prefixes=True)
        >>> result.entry, result.tensors, result.stripped
        ('model', 2, ['module.'])
        >>> result.metadata
        {'format': 'pt', 'source': 'last.pth', 'source_entry': 'model',
         'stripped_prefixes': 'module.', 'ckpt.epoch': '3'}
        >>> tmp.cleanup()
    """
    from safetensors.torch import load_file, save

    src, dst = Path(src), Path(dst)
    if dst.suffix != ".safetensors":
        raise ValueError(
            f"{dst}: the output name should end in .safetensors, e.g. {dst.with_suffix('.safetensors')}"
        )
    if dst.exists() and not overwrite:
        raise FileExistsError(
            f"{dst}: already exists; pass --overwrite (overwrite=True) to replace it"
        )
    if src.suffix == ".safetensors":
        raise ValueError(f"{src}: is already a .safetensors file; nothing to convert")
    try:
        # mmap: the data is read once, when it is written out
        obj = load_checkpoint(src, mmap=True)
    except CheckpointError as e:
        raise InspectError(" ".join(str(e).split())) from None
    entry, sd = _weights(src, obj)
    stripped = detect_prefixes(sd) if strip_prefixes else []
    cut = len("".join(stripped))  # each wrapper prefix every key carries, once
    tensors, untied = _untied({k[cut:]: v for k, v in sd.items()})
    metadata = _header(src, obj, entry, stripped)
    with atomic_write(dst) as f:
        f.write(save(tensors, metadata=metadata))
    back = load_file(str(dst))
    if set(back) != set(tensors) or not all(torch.equal(back[k], v) for k, v in tensors.items()):
        raise CheckpointError(
            f"{dst}: the written file does not match {src}; the disk may be failing"
        )
    return ConvertResult(
        str(src),
        str(dst),
        entry,
        len(tensors),
        dst.stat().st_size,
        stripped,
        untied,
        metadata,
        partial_prefixes(list(tensors)) if strip_prefixes else {},
        strip_prefixes,
    )


def _weights(src: Path, obj: Any) -> tuple[str, Mapping[str, torch.Tensor]]:
    """The checkpoint entry holding the weights ("" for a state_dict) and the weights, all tensors."""
    entry, sd = weights_entry(obj)
    if sd is None:
        keys = sorted(map(str, obj))[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise ValueError(
            f"{src}: no state_dict found (a mapping of names to tensors at the top level or under "
            f"'model'/'state_dict'); found {keys}"
        )
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(
            f"{src}: safetensors stores tensors only, but {bad[0]!r} is a "
            f"{type(sd[bad[0]]).__name__}; drop such entries first"
        )
    return entry or "", sd


def _untied(sd: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Contiguous CPU tensors with memory of their own (safetensors refuses shared memory), and the
    keys written as copies of an earlier one.
    """
    shared = shared_storages(sd.items())
    tensors = {
        k: (v.clone() if k in shared else v).detach().cpu().contiguous() for k, v in sd.items()
    }
    return tensors, [f"{k} (= {first})" for k, first in shared.items()]


def _header(src: Path, obj: Any, entry: str, stripped: list[str]) -> dict[str, str]:
    """Where the weights came from, and a training checkpoint's plain values under ``ckpt.``."""
    metadata = {"format": "pt", "source": src.name}
    if entry:
        metadata["source_entry"] = entry
    if stripped:
        metadata["stripped_prefixes"] = ",".join(stripped)
    if isinstance(obj, Mapping) and entry:
        for k, v in obj.items():
            if isinstance(k, str) and isinstance(v, (int, float, str)) and not isinstance(v, bool):
                metadata[_CKPT + k] = str(v)
    return metadata
