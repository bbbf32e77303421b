"""Convert a ``torch.save`` state_dict (or the ``model`` entry of a training checkpoint) to safetensors.

``convert_to_safetensors(src, dst)`` loads ``src`` with safe loading (``weights_only=True``, on the
CPU), picks the weights, optionally strips wrapper prefixes (``module.``, ``_orig_mod.``), writes
``dst`` atomically (a crash never leaves a torn file) and checks the round trip with
``torch.equal``. Scalars of a training checkpoint (``epoch``...) go into the header metadata.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checkpoints import CheckpointError, atomic_write, load_checkpoint
from .inspector import InspectError, _weights_entry, detect_prefixes

__all__ = ["ConvertResult", "convert_to_safetensors"]


@dataclass
class ConvertResult:
    src: str
    dst: str
    entry: str  # "" when src is a state_dict, else the checkpoint key the weights came from
    tensors: int
    file_bytes: int
    stripped: list[str] = field(default_factory=list)
    untied: list[str] = field(default_factory=list)  # keys written as copies of a shared tensor
    metadata: dict[str, str] = field(default_factory=dict)

    def lines(self) -> list[str]:
        where = f"{self.src}[{self.entry!r}]" if self.entry else self.src
        out = [f"wrote {self.dst}: {self.tensors} tensors from {where} ({self.file_bytes:,} bytes)"]
        if self.stripped:
            out.append("stripped prefixes: " + ", ".join(self.stripped))
        if self.untied:
            out.append("shared tensors written as separate copies: " + ", ".join(self.untied))
        out.append("round trip: every tensor is torch.equal to the source")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    __repr__ = __str__


def _strip_prefixes(sd: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    found = detect_prefixes(list(sd))
    try:  # the workbook's general tool, if present
        from .prefixes import normalize_keys  # type: ignore[import-not-found]
    except ImportError:
        normalize_keys = None
    if normalize_keys is not None:
        out = normalize_keys(dict(sd))
        if isinstance(out, tuple):
            out = out[0]
        return dict(out), found
    out = dict(sd)
    for p in found:  # PyTorch's own helper, one prefix at a time
        torch.nn.modules.utils.consume_prefix_in_state_dict_if_present(out, p)
    return dict(out), found


def convert_to_safetensors(src: str | os.PathLike, dst: str | os.PathLike, *, strip_prefixes: bool = False,
                           overwrite: bool = False) -> ConvertResult:
    """Write the weights of ``src`` (a ``.pth``/``.pt`` file) to ``dst`` (``.safetensors``).

    Raises ``FileNotFoundError``/``IsADirectoryError``/``CheckpointError``/``FileExistsError``/
    ``ValueError`` with a message naming the file and the fix.
    """
    from safetensors.torch import load_file, save

    src, dst = Path(src), Path(dst)
    if dst.suffix != ".safetensors":
        raise ValueError(f"{dst}: the output name should end in .safetensors, e.g. {dst.with_suffix('.safetensors')}")
    if dst.exists() and not overwrite:
        raise FileExistsError(f"{dst}: already exists; pass --overwrite (overwrite=True) to replace it")
    if src.suffix == ".safetensors":
        raise ValueError(f"{src}: is already a .safetensors file; nothing to convert")
    try:
        obj = load_checkpoint(src)
    except CheckpointError as e:
        raise InspectError(" ".join(str(e).split())) from None
    entry, sd = _weights_entry(obj)
    if sd is None:
        keys = sorted(map(str, obj))[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise ValueError(f"{src}: no state_dict found (a mapping of names to tensors at the top level or under "
                         f"'model'/'state_dict'); found {keys}")
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{src}: safetensors stores tensors only, but {bad[0]!r} is a "
                         f"{type(sd[bad[0]]).__name__}; drop such entries first")
    stripped: list[str] = []
    if strip_prefixes:
        sd, stripped = _strip_prefixes(sd)
    tensors: dict[str, torch.Tensor] = {}
    seen: dict[tuple[int, int], str] = {}
    untied: list[str] = []
    for k, v in sd.items():
        st = v.untyped_storage()
        sid = (st.data_ptr(), st.nbytes())
        if sid in seen and st.nbytes() > 0:  # save_file refuses tensors that share memory
            untied.append(f"{k} (= {seen[sid]})")
            v = v.clone()
        else:
            seen[sid] = k
        tensors[k] = v.detach().cpu().contiguous()
    metadata = {"format": "pt", "source": src.name}
    if entry:
        metadata["source_entry"] = entry
    if stripped:
        metadata["stripped_prefixes"] = ",".join(stripped)
    if isinstance(obj, Mapping) and entry:
        for k, v in obj.items():
            if isinstance(k, str) and isinstance(v, (int, float, str)) and not isinstance(v, bool):
                metadata[k] = str(v)
    data = save(tensors, metadata=metadata)
    with atomic_write(dst) as f:
        f.write(data)
    back = load_file(str(dst))
    if set(back) != set(tensors) or not all(torch.equal(back[k], v) for k, v in tensors.items()):
        raise CheckpointError(f"{dst}: the written file does not match {src}; the disk may be failing")
    return ConvertResult(str(src), str(dst), entry or "", len(tensors), dst.stat().st_size, stripped, untied,
                         metadata)

