"""Saving and loading checkpoint files safely.

* ``save_checkpoint(obj, path)``: atomic. The data goes to a temporary file in the same folder,
  is flushed and fsynced, then ``os.replace`` puts it in place. A crash at any moment leaves the
  old file or the new one, never a torn one.
* ``load_checkpoint(path)``: ``torch.load`` with safe defaults (``weights_only=True``,
  ``map_location="cpu"``) and errors that name the file and the likely cause.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import torch

__all__ = ["CheckpointError", "atomic_write", "save_checkpoint", "load_checkpoint"]


class CheckpointError(RuntimeError):
    """A checkpoint file could not be read; the message names the file and the likely fix."""


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file next to ``path`` for writing; on success it replaces ``path``.

    The data is flushed and fsynced before ``os.replace``, so readers see the old file or the
    complete new one, never a torn one. On any error the temporary file is removed and ``path``
    is left as it was. Missing parent folders are created.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"expected a file path such as 'runs/last.pth', got {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder; give a file name inside it, e.g. {path / 'last.pth'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def save_checkpoint(obj: Any, path: str | os.PathLike) -> Path:
    """Save ``obj`` with ``torch.save`` atomically to ``path`` and return the path.

    Missing parent folders are created. If saving fails (an object that cannot be pickled, a
    full disk, a crash), the previous file at ``path``, if any, is left untouched and no
    temporary file stays behind.
    """
    with atomic_write(path) as f:
        torch.save(obj, f)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu", weights_only: bool = True) -> Any:
    """``torch.load`` with safe defaults and clear errors.

    Errors (``FileNotFoundError``, ``IsADirectoryError`` or ``CheckpointError``) name the file and
    the likely cause: a wrong path, a folder, an empty or truncated file (an interrupted save), a
    file that is not a PyTorch checkpoint, or one that safe loading refuses (with the globals it
    would need).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"load_checkpoint() needs a file path, got {type(path).__name__}; "
                        "to read bytes in memory, wrap them in io.BytesIO and call torch.load")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file; check the name and that relative paths start "
                                "from the current folder")
    if path.is_dir():
        hint = (" It holds a .metadata file: this is a torch.distributed.checkpoint folder; load it with "
                "torch.distributed.checkpoint.load or convert it with dcp_to_torch_save."
                if (path / ".metadata").exists() else " Give the path of a file inside it.")
        raise IsADirectoryError(f"{path}: is a folder, not a checkpoint file.{hint}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: the file is empty (0 bytes), probably a save that was interrupted; "
                              "use an earlier checkpoint, and save with save_checkpoint() so this cannot happen")
    if path.suffix == ".safetensors":
        raise CheckpointError(f"{path}: a .safetensors file is not a torch.save file; read it with "
                              "safetensors.torch.load_file(path)")
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except pickle.UnpicklingError as e:
        msg = str(e)
        if "Weights only load failed" in msg:
            try:
                needed = torch.serialization.get_unsafe_globals_in_checkpoint(path)
            except Exception:  # pragma: no cover - best effort
                needed = []
            what = f" It needs: {', '.join(needed)}." if needed else ""
            raise CheckpointError(
                f"{path}: refused by safe loading (weights_only=True): the file holds Python objects "
                f"other than tensors and plain containers.{what} If you trust the file's source, allow "
                "exactly those with torch.serialization.safe_globals([...]); never use "
                "weights_only=False on a file you did not make yourself.") from e
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({msg.splitlines()[0]}); "
                              "check that the path points to a file written by torch.save") from e
    except RuntimeError as e:
        msg = str(e)
        if "central directory" in msg or "zip archive" in msg or isinstance(e.__cause__, zipfile.BadZipFile):
            raise CheckpointError(f"{path}: the file is truncated or is not a checkpoint ({size} bytes, "
                                  "no valid zip archive); it was probably cut off by an interrupted save or "
                                  "copy: use an earlier checkpoint or copy it again") from e
        if "CUDA" in msg and "deserialize" in msg:
            raise CheckpointError(f"{path}: the file was saved on a GPU and this machine has no CUDA; "
                                  "pass map_location='cpu'") from e
        raise CheckpointError(f"{path}: could not be loaded: {msg.splitlines()[0]}") from e
    except (EOFError, ValueError, IndexError, KeyError, AttributeError, ImportError) as e:
        raise CheckpointError(f"{path}: the file is truncated or is not a PyTorch checkpoint ({size} bytes; "
                              f"{type(e).__name__}: {e}); check the path, or use an earlier checkpoint") from e
