"""Look inside a checkpoint file without running any code from it: ``inspect_checkpoint``.

A file that safe loading accepts is loaded with ``weights_only=True`` (zip files with
``mmap=True``) and a ``map_location`` that keeps storages on the CPU and records where they
were saved. A file it refuses is never loaded: an unpickler that turns every global into an
inert stub (nothing is imported or run) lists the globals it names and the storages it holds.
A ``.safetensors`` file is read through its header only. Files that are not a loadable checkpoint are named from their bytes first
(``formats``), each in one line with the fix.
"""

from __future__ import annotations

import _compat_pickle
import io
import json
import math
import os
import pickle
import re
import warnings
import zipfile
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import torch

from . import formats
from .checkpoints import CheckpointError, load_checkpoint
from .inputs import WEIGHT_KEYS, weights_entry
from .prefixes import detect_prefixes
from .render import Report, Table, human_bytes

__all__ = ["InspectError", "CheckpointReport", "inspect_checkpoint", "shared_storages"]

# Globals that give a pickle direct access to code execution, files or processes. Not a complete
# list (any allowed callable can be abused); used only to label the report. A name is also
# matched under the Python 2 name pickle's fix_imports writes (protocols 0-2, torch.save's
# default): commands.Popen is subprocess.Popen, __builtin__.eval is builtins.eval.
_DANGEROUS = tuple(
    "builtins.exec builtins.eval builtins.compile builtins.open builtins.__import__ "
    "builtins.getattr io.open os. posix. nt. subprocess. runpy. importlib. shutil. socket. pty. "
    "sys. code. pickle. marshal. webbrowser. _io.open _posixsubprocess. _winapi. ctypes. "
    "_ctypes. multiprocessing.".split()
)


class InspectError(CheckpointError):
    """The file could not be inspected; the message names the file and the likely cause. Catching
    ``CheckpointError`` catches it too, as it does ``load_checkpoint``'s errors.

    Example::

        >>> from labs_utils.toolkit import CheckpointError, InspectError
        >>> issubclass(InspectError, CheckpointError)
        True
    """


@dataclass(repr=False)
class CheckpointReport(Report):
    """What ``inspect_checkpoint`` found. ``str()`` is a table, ``to_json()`` is for scripts."""

    path: str
    format: str
    file_bytes: int
    safe_to_load: bool
    refused_globals: list[str] = field(default_factory=list)
    top_level_keys: list[str] | None = None
    weights_entry: str | None = None  # "" for a top-level state_dict, "model" for ckpt["model"]
    tensors: int | None = None
    weights_elements: int | None = None  # elements of the weights entry (parameters and buffers)
    elements: int | None = None  # elements of every tensor in the file
    tensor_bytes: int = 0  # bytes of tensor data (shared storages counted once)
    storages: int = 0
    # keys sharing storage with an earlier key
    shared_tensors: list[str] = field(default_factory=list)
    dtypes: dict[str, int] = field(default_factory=dict)
    saved_on: dict[str, int] = field(default_factory=dict)  # location tag -> storages
    prefixes: list[str] = field(default_factory=list)
    # safetensors header metadata
    metadata: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def table(self) -> Table:
        def counts(c: Mapping[str, int], unit: str) -> str:
            return ", ".join(f"{k} ({v} {unit})" for k, v in c.items()) or "-"

        size = f"{human_bytes(self.file_bytes)} ({self.file_bytes:,} bytes)"
        rows: list[list[Any]] = [["format", self.format], ["file size", size]]
        if not self.safe_to_load:
            rows.append(["safe loading", "REFUSED by weights_only=True"])
            danger = "   <- can run code or touch files"
            rows += [
                ["  needs", g + (danger if _is_dangerous(g) else "")] for g in self.refused_globals
            ]
        elif self.format.startswith("torch"):
            rows.append(["safe loading", "ok: loads with weights_only=True"])
        else:
            rows.append(["safe loading", "ok: safetensors holds tensors and strings only, no code"])
        if self.top_level_keys is not None and self.weights_entry != "":
            rows.append(["top-level keys", ", ".join(self.top_level_keys) or "(empty)"])
        if self.weights_entry is not None:
            entry = self.weights_entry
            where = f"[{entry!r}]" if entry else "the file itself (a state_dict)"
            rows.append(["weights", f"{where}: {self.weights_elements:,} elements"])
        data = f"{human_bytes(self.tensor_bytes)} of data"
        if self.tensors is not None:
            rows.append(["tensors", f"{self.tensors} tensors, {self.elements:,} elements, {data}"])
        else:
            rows.append(["storages", f"{self.storages} (read from the pickle, not loaded), {data}"])
        if self.shared_tensors:
            rows.append(["shared storage", ", ".join(self.shared_tensors)])
        rows.append(
            ["dtypes", counts(self.dtypes, "storages" if self.tensors is None else "tensors")]
        )
        saved_on = counts(self.saved_on, "storages")
        if not self.saved_on and self.format == "safetensors":
            saved_on = "not recorded (safetensors stores no device)"
        rows.append(["saved on", saved_on])
        rows.append(["prefixes", ", ".join(self.prefixes) or "none"])
        rows += [[f"metadata[{k}]", v] for k, v in self.metadata.items()]
        return Table(
            ["field", "value"], rows, title=f"checkpoint {self.path}", notes=list(self.notes)
        )


def _is_dangerous(name: str) -> bool:
    module = name.split(".", 1)[0]
    py3 = _compat_pickle.IMPORT_MAPPING.get(module, module) + name[len(module) :]
    return any(
        n == d or (d.endswith(".") and n.startswith(d)) for n in (name, py3) for d in _DANGEROUS
    )


_LEGACY_NOTE = (
    "legacy format (torch.save before PyTorch 1.6, or _use_new_zipfile_serialization=False): "
    "torch.load(..., mmap=True) refuses it; rewrite it once with "
    "torch.save(torch.load(old, weights_only=True), new)"
)
_FORMATS = {"zip": "torch.save (zip archive)", "legacy": "torch.save (legacy format)"}


def _main_pickle(path: Path, kind: str) -> BinaryIO:
    """The checkpoint's main pickle, to read: a zip archive's ``*/data.pkl``, else the file."""
    if kind != "zip":
        return open(path, "rb")
    with zipfile.ZipFile(path) as zf:
        name = next(n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1)
        return io.BytesIO(zf.read(name))


def _protocol_message(path: Path, kind: str, operand: int) -> str:
    """A torch.save file whose pickle uses opcodes that safe loading does not implement; the
    protocol is read from the main pickle's PROTO opcode (protocols 0 and 1 have none)."""
    try:
        with _main_pickle(path, kind) as f:
            head = f.read(2)
    except Exception:
        head = b""
    protocol = str(head[1]) if head[:1] == b"\x80" and len(head) == 2 else "0 or 1"
    saved = (
        f"saved with pickle protocol {protocol} (torch.save(..., pickle_protocol=N)), whose"
        if head and protocol != "2"
        else "its pickle uses"
    )
    return (
        f"{path}: {saved} opcodes safe loading (weights_only=True) does not support ('Unsupported operand "
        f"{operand}'); nothing in it was run; if you trust its source, load it once with weights_only=False "
        "and save it again with torch.save's default protocol"
    )


def _counts(values: Any) -> dict[str, int]:
    return dict(sorted(Counter(values).items()))


def _nbytes(dtype: str, numel: int) -> int:
    """Bytes of ``numel`` elements of the torch dtype named ``dtype`` (1 each if it is unknown)."""
    dt = getattr(torch, dtype, None)
    return numel * (dt.itemsize if isinstance(dt, torch.dtype) else 1)


# --- safetensors ---------------------------------------------------------------------------------


# the dtype codes of a safetensors header, by torch's names
_SAFETENSORS_DTYPES = dict(
    pair.split("=")
    for pair in (
        "F64=float64 F32=float32 F16=float16 BF16=bfloat16 I64=int64 I32=int32 I16=int16 I8=int8 "
        "U8=uint8 U16=uint16 U32=uint32 U64=uint64 BOOL=bool F8_E4M3=float8_e4m3fn "
        "F8_E5M2=float8_e5m2 C64=complex64"
    ).split()
)


def _inspect_safetensors(path: Path, size: int) -> CheckpointReport:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            rows = []  # (key, torch's dtype name, elements)
            for k in f.keys():
                sl = f.get_slice(k)
                dtype = _SAFETENSORS_DTYPES.get(sl.get_dtype(), sl.get_dtype())
                rows.append((k, dtype, math.prod(sl.get_shape())))
    except Exception as e:  # SafetensorError, OSError ...
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise InspectError(
            f"{path}: not a valid .safetensors file: corrupt or truncated header ({first}); "
            "copy or convert the file again"
        ) from None
    elements = sum(n for _, _, n in rows)
    return CheckpointReport(
        path=str(path),
        format="safetensors",
        file_bytes=size,
        safe_to_load=True,
        weights_entry="",
        tensors=len(rows),
        weights_elements=elements,
        elements=elements,
        tensor_bytes=sum(_nbytes(dtype, n) for _, dtype, n in rows),
        storages=len(rows),
        dtypes=_counts(dtype for _, dtype, _ in rows),
        prefixes=detect_prefixes(k for k, _, _ in rows),
        metadata=dict(sorted(meta.items())),
    )


# --- torch.save files: static scan of the pickle (nothing is executed) ------------------------------


class _Stub:
    """What a global of the scanned file stands for: calls, attributes and items are accepted
    and ignored, so nothing from the file's modules is imported or run."""

    def __call__(self, *args: Any, **kwargs: Any) -> _Stub:
        return _Stub()

    def _ignore(self, *args: Any, **kwargs: Any) -> None:
        pass

    __init__ = __setstate__ = __setitem__ = append = extend = add = _ignore


class _Scanner(pickle._Unpickler):
    """An unpickler that records the globals a pickle names and the storages it references;
    ``find_class`` returns stubs (the "restricting globals" recipe of Python's ``pickle`` docs).
    The pure-Python unpickler keeps its memo in a dict: a huge memo index in a hostile file cannot
    make it allocate gigabytes, as the C unpickler's array would."""

    def __init__(self, stream: BinaryIO, globals_: set[str], storages: list) -> None:
        super().__init__(stream, encoding="latin1")
        self.globals_, self.storages = globals_, storages

    def find_class(self, module: str, name: str) -> type[_Stub]:
        self.globals_.add(f"{module}.{name}")
        return type("Global", (_Stub,), {"name": name})

    def persistent_load(self, pid: Any) -> type[_Stub]:
        if isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage":
            st = pid[1]
            self.storages.append((getattr(st, "name", "") or str(st), str(pid[3]), int(pid[4])))
        return _Stub  # a storage, or the class of a module a legacy file names this way


def _scan_pickle(stream: BinaryIO, max_pickles: int = 6) -> tuple[set[str], list]:
    """Globals named and storages referenced (storage type, location, numel) by the pickle(s) in
    ``stream`` (a legacy file holds several, then raw tensor data, which is not read), importing
    and running nothing."""
    globals_: set[str] = set()
    storages: list[tuple[str, str, int]] = []
    for i in range(max_pickles):
        if not stream.read(1):
            break
        stream.seek(-1, io.SEEK_CUR)
        try:
            _Scanner(stream, globals_, storages).load()
        except Exception:
            if i == 0:
                raise
            break  # after the pickles of a legacy file comes raw tensor data
    return globals_, storages


def _storage_dtype(storage_type: str) -> str:
    cls = getattr(torch, storage_type, None) if storage_type.endswith("Storage") else None
    try:
        # legacy storage classes warn that TypedStorage is deprecated
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return str(cls.dtype).replace("torch.", "")  # type: ignore[union-attr]
    except Exception:
        return storage_type


def _allowed_globals() -> set[str]:
    from torch import _weights_only_unpickler as wou  # private, best effort

    return set(wou._get_allowed_globals()) | set(wou._get_user_allowed_globals())


def _refused_report(path: Path, size: int, kind: str) -> CheckpointReport:
    """Report on a torch.save file that safe loading refuses, without unpickling it."""
    try:
        with _main_pickle(path, kind) as f:
            globals_, storages = _scan_pickle(f)
        if kind == "zip":
            refused = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
        else:
            refused = sorted(globals_ - _allowed_globals())
    except Exception as e:
        raise InspectError(
            f"{path}: refused by safe loading, and its pickle could not be read "
            f"({type(e).__name__}); do not load it"
        ) from None
    notes = [
        "safe loading refuses this file, so it was not unpickled: tensors and keys are unknown;",
        "allow the globals above with torch.serialization.safe_globals([...]) only if you trust its source.",
    ]
    if kind == "legacy":
        notes.append(_LEGACY_NOTE)
    return CheckpointReport(
        path=str(path),
        format=_FORMATS.get(kind, "pickle (legacy torch.save or plain pickle)"),
        file_bytes=size,
        safe_to_load=False,
        refused_globals=refused,
        tensor_bytes=sum(_nbytes(_storage_dtype(t), numel) for t, _, numel in storages),
        storages=len(storages),
        dtypes=_counts(_storage_dtype(t) for t, _, _ in storages),
        saved_on=_counts(loc for _, loc, _ in storages),
        notes=notes,
    )


# --- torch.save files: safe load ---------------------------------------------------------------------


def _walk(obj: Any, prefix: str, out: list[tuple[str, torch.Tensor]]) -> None:
    if isinstance(obj, torch.Tensor):
        out.append((prefix, obj))
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            _walk(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _walk(v, f"{prefix}.{i}" if prefix else str(i), out)


def shared_storages(tensors: Iterable[tuple[str, torch.Tensor]]) -> dict[str, str]:
    """key -> the earlier key whose tensor uses the same (non-empty) storage (tied weights)."""
    first: dict[tuple[int, int], str] = {}
    shared: dict[str, str] = {}
    for key, t in tensors:
        st = t.untyped_storage()
        sid = (st.data_ptr(), st.nbytes())
        if sid in first and st.nbytes() > 0:
            shared[key] = first[sid]
        else:
            first[sid] = key
    return shared


def _loaded_report(
    path: Path, size: int, kind: str, obj: Any, locations: list[str]
) -> CheckpointReport:
    found: list[tuple[str, torch.Tensor]] = []
    _walk(obj, "", found)
    shared = shared_storages(found)
    entry, sd = weights_entry(obj)
    params = None
    if sd is not None:
        params = sum(v.numel() for v in sd.values() if isinstance(v, torch.Tensor))
    notes = [_LEGACY_NOTE] if kind == "legacy" else []
    if sd is None and not found:
        notes.append("no tensors found")
    elif sd is None:
        notes.append("no state_dict found at the top level or under " + ", ".join(WEIGHT_KEYS))
    return CheckpointReport(
        path=str(path),
        format=_FORMATS[kind],  # a file that loads is a torch.save file
        file_bytes=size,
        safe_to_load=True,
        top_level_keys=sorted(map(str, obj)) if isinstance(obj, Mapping) else None,
        weights_entry=entry,
        tensors=len(found),
        weights_elements=params,
        elements=sum(t.numel() for _, t in found),
        tensor_bytes=sum(t.untyped_storage().nbytes() for k, t in found if k not in shared),
        storages=len(locations),
        shared_tensors=[f"{k} = {first}" for k, first in shared.items()],
        dtypes=_counts(str(t.dtype).replace("torch.", "") for _, t in found),
        saved_on=_counts(locations),
        prefixes=detect_prefixes(list(sd)) if sd is not None else [],
        notes=notes,
    )


def inspect_checkpoint(path: str | os.PathLike) -> CheckpointReport:
    """Report on the checkpoint at ``path`` without running code from it and without CUDA.

    Raises ``FileNotFoundError``, ``IsADirectoryError`` or ``InspectError`` (a ``CheckpointError``)
    with a one-line message naming the file for anything that is not a readable checkpoint.
    A file that safe loading refuses is not an error: the report lists what it would need.

    Example::

        >>> import tempfile, torch
        >>> from pathlib import Path
        >>> from labs_utils.toolkit import inspect_checkpoint, save_checkpoint
        >>> tmp = tempfile.TemporaryDirectory()
        >>> weights = {"module." + k: v for k, v in torch.nn.Linear(2, 3).state_dict().items()}
        >>> path = save_checkpoint({"model": weights, "epoch": 3}, Path(tmp.name) / "last.pth")
        >>> report = inspect_checkpoint(path)
        >>> report.format, report.safe_to_load, report.top_level_keys
        ('torch.save (zip archive)', True, ['epoch', 'model'])
        >>> report.weights_entry, report.tensors, report.weights_elements, report.dtypes
        ('model', 2, 9, {'float32': 2})
        >>> report.saved_on, report.prefixes
        ({'cpu': 2}, ['module.'])
        >>> tmp.cleanup()
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"inspect_checkpoint() needs a file path, got {type(path).__name__}")
    path = Path(path)
    size, head = formats.sniff(path, InspectError)
    kind = formats.kind(head, size)
    if kind == "safetensors" or path.suffix == ".safetensors":
        return _inspect_safetensors(path, size)
    if kind == "other":
        raise InspectError(
            f"{path}: not a checkpoint: neither a torch.save file (zip or pickle) nor "
            f"safetensors ({size} bytes); check the path"
        )
    locations: list[str] = []

    def record(storage: Any, location: str) -> Any:
        # keep it on the CPU, remember where it was saved
        locations.append(location)
        return storage

    try:
        # e.g. "Detected pickle protocol 4": a warning would print paths
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = load_checkpoint(path, map_location=record, weights_only=True, mmap=True)
    except CheckpointError as e:
        cause = e.__cause__
        if isinstance(cause, pickle.UnpicklingError) and "Weights only load failed" in str(cause):
            operand = re.search(r"Unsupported operand (\d+)", str(cause))
            if operand:
                raise InspectError(_protocol_message(path, kind, int(operand.group(1)))) from None
            return _refused_report(path, size, kind)
        msg = " ".join(str(e).split())
        if kind in ("pickle", "legacy"):
            # what the pickle would import, still without running it
            try:
                with open(path, "rb") as f:
                    unsafe = sorted(_scan_pickle(f)[0] - _allowed_globals())
            except Exception:
                unsafe = []
            if unsafe:
                msg += f" (it imports {', '.join(unsafe)}, which safe loading refuses; nothing in it was run)"
        raise InspectError(msg) from None
    return _loaded_report(path, size, kind, obj, locations)
