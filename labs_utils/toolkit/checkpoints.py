"""Saving and loading checkpoint files safely.

* ``save_checkpoint(obj, path)``: atomic. The data goes to a temporary file in the same folder,
  is flushed and fsynced, then ``os.replace`` puts it in place (and the folder is fsynced). A
  crash at any moment leaves the old file or the new one, never a torn one. The file gets the
  mode ``torch.save`` would give it (the umask for a new file, the old file's mode otherwise).
* ``load_checkpoint(path)``: ``torch.load`` with safe defaults (``weights_only=True``,
  ``map_location="cpu"``) and errors that name the file and the likely cause.

Random generator states live in ``rng.py``, ``CheckpointManager`` in ``manager.py``.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import stat
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import torch

__all__ = ["CheckpointError", "atomic_write", "save_checkpoint", "load_checkpoint"]


class CheckpointError(RuntimeError):
    """A checkpoint file could not be read; the message names the file and the likely fix.

    Example::

        >>> import tempfile
        >>> from pathlib import Path
        >>> from labs_utils.toolkit import CheckpointError, load_checkpoint
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = Path(tmp.name) / "weights.pth"
        >>> _ = path.write_text('{"lr": 0.1}')  # the run's settings, not its weights
        >>> load_checkpoint(path)
        Traceback (most recent call last):
        ...
        labs_utils.toolkit.checkpoints.CheckpointError: ...weights.pth: not a PyTorch
        checkpoint: a JSON/text file; check that the path points to the checkpoint, not to
        its metadata
        >>> issubclass(CheckpointError, RuntimeError)
        True
        >>> tmp.cleanup()
    """


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


def _umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux >= 4.7)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set it and put it back at once
    os.umask(mask)
    return mask


def _mode_like_open(path: Path) -> int:
    """The permission bits ``open(path, "wb")`` (so ``torch.save``) would leave on ``path``: those of
    the file it overwrites, or 0o666 minus the umask for a new file."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


class _StagedFile:
    """A temporary file next to ``path``, with the mode ``path`` will have. Write to ``.file``, then
    ``commit()`` flushes, fsyncs and ``os.replace``s it onto ``path``; ``discard()`` removes it."""

    def __init__(self, path: str | os.PathLike, *, fsync: bool = True):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(
                f"expected a file path such as 'runs/last.pth', got {type(path).__name__}"
            )
        self.path, self.fsync = Path(path), fsync
        if self.path.is_dir():
            raise IsADirectoryError(
                f"{self.path}: is a folder; give a file name inside it, "
                f"e.g. {self.path / 'last.pth'}"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # mkstemp makes the file 0o600, os.replace would keep that
        mode = _mode_like_open(self.path)
        fd, name = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
        )
        self.tmp = Path(name)
        self.file: BinaryIO = os.fdopen(fd, "wb")
        try:
            os.chmod(self.tmp, mode)
        except BaseException:
            self.discard()
            raise

    def close(self) -> None:
        """Flush the data (and fsync it unless ``fsync=False``) and close the file."""
        if not self.file.closed:
            self.file.flush()
            if self.fsync:
                os.fsync(self.file.fileno())
            self.file.close()

    def commit(self) -> None:
        self.close()
        os.replace(self.tmp, self.path)
        if self.fsync:
            _fsync_dir(self.path.parent)  # makes the rename itself durable

    def discard(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike,
    *,
    fsync: bool = True,
    check: Callable[[Path], None] | None = None,
) -> Iterator[BinaryIO]:
    """Open a temporary file next to ``path`` for writing; on success it replaces ``path``.

    The data is flushed and fsynced before ``os.replace``, and the folder is fsynced after it, so
    readers see the old file or the complete new one, never a torn one. On any error the
    temporary file is removed and ``path`` is left as it was. Missing parent folders are created.

    The file gets the permission bits ``open(path, "wb")`` would give it (as ``torch.save`` does):
    those of the file it replaces, or 0o666 minus the umask for a new file. Its owner is the
    writing process's user, since it is a new file.

    ``check``, if given, is called with the temporary file's path once the data is written and
    before anything is replaced; if it raises, the temporary file is removed and ``path`` is left
    as it was.

    ``fsync=False`` skips waiting for the disk: the replace is still atomic for a process that
    crashes or is killed, but after a power loss or kernel crash the new file may be empty.

    Example::

        >>> import tempfile
        >>> from pathlib import Path
        >>> from labs_utils.toolkit import atomic_write
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = Path(tmp.name) / "notes.txt"
        >>> with atomic_write(path) as f:
        ...     _ = f.write(b"epoch 3")
        >>> path.read_bytes()
        b'epoch 3'
        >>> with atomic_write(path) as f:  # fails halfway: the old file stays
        ...     _ = f.write(b"epoch 4, half writ")
        ...     raise OSError("disk full")
        Traceback (most recent call last):
        ...
        OSError: disk full
        >>> path.read_bytes()
        b'epoch 3'
        >>> [p.name for p in Path(tmp.name).iterdir()]  # no temporary file left behind
        ['notes.txt']
        >>> tmp.cleanup()
    """
    staged = _StagedFile(path, fsync=fsync)
    try:
        yield staged.file
        staged.close()
        if check is not None:
            check(staged.tmp)
        staged.commit()
    except BaseException:
        staged.discard()
        raise


def save_checkpoint(
    obj: Any,
    path: str | os.PathLike,
    *,
    fsync: bool = True,
    check_safe_load: bool = False,
) -> Path:
    """Save ``obj`` with ``torch.save`` atomically to ``path`` and return the path.

    Missing parent folders are created. If saving fails (an object that cannot be pickled, a
    full disk, a crash), the previous file at ``path``, if any, is left untouched and no
    temporary file stays behind. The file gets the mode ``torch.save`` would give it (see
    ``atomic_write``). ``fsync=False``: see ``atomic_write``.

    ``check_safe_load=True`` also refuses, with a ``TypeError`` naming the entry and its type, an
    ``obj`` that ``torch.load(path, weights_only=True)`` would refuse (a ``pathlib.Path``, a
    dataclass, an ``argparse.Namespace`` ...): the written file is loaded back that way (with
    ``mmap=True``, so tensor data is not read) before it replaces ``path``. The safe globals
    allowed in this process at that moment count as allowed.

    Example::

        >>> import tempfile, torch
        >>> from pathlib import Path
        >>> from labs_utils.toolkit import load_checkpoint, save_checkpoint
        >>> tmp = tempfile.TemporaryDirectory()
        >>> model = torch.nn.Linear(2, 2)
        >>> path = Path(tmp.name) / "runs" / "last.pth"  # runs/ is created
        >>> save_checkpoint({"model": model.state_dict(), "epoch": 3}, path).name
        'last.pth'
        >>> save_checkpoint({"epoch": 4, "out": Path("runs")}, path, check_safe_load=True)
        Traceback (most recent call last):
        ...
        TypeError: ...: obj['out'] is a pathlib...Path, which torch.load(weights_only=True)
        refuses, so the file would not load back safely; nothing was replaced. ...
        >>> load_checkpoint(path)["epoch"]  # the previous file is untouched
        3
        >>> tmp.cleanup()
    """
    with atomic_write(
        path,
        fsync=fsync,
        check=_safe_load_check(obj, Path(path)) if check_safe_load else None,
    ) as f:
        torch.save(obj, f)
    return Path(path)


def _qualname(x: Any) -> str:
    return f"{getattr(x, '__module__', '')}.{getattr(x, '__qualname__', getattr(x, '__name__', ''))}"


def _find_global(
    obj: Any, names: set[str], where: str, depth: int = 0
) -> tuple[str, str]:
    """Where ``obj`` holds an instance of one of the classes ``names`` (or one of them itself):
    ``("obj['config']['out_dir']", "pathlib.PosixPath")``, or ``("", "")``. Tensors are not searched."""
    for name in (_qualname(type(obj)), _qualname(obj) if callable(obj) else ""):
        if name in names:
            return where, name
    if depth > 20 or isinstance(obj, (torch.Tensor, str, bytes)):
        return "", ""
    if isinstance(obj, Mapping):
        items: Any = ((f"{where}[{k!r}]", v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple, set, frozenset)):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(obj))
    else:
        return "", ""
    for w, v in items:
        found = _find_global(v, names, w, depth + 1)
        if found[0]:
            return found
    return "", ""


def _safe_load_check(obj: Any, path: Path, what: str = "obj") -> Callable[[Path], None]:
    """A ``check`` for ``atomic_write``: the file written for ``path`` must load with ``weights_only=True``."""

    def check(tmp: Path) -> None:
        try:
            torch.load(tmp, map_location="cpu", weights_only=True, mmap=True)
            return
        except pickle.UnpicklingError:
            needed = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(tmp))
        entry, name = _find_global(obj, set(needed), what)
        article = "an" if name[:1].lower() in "aeiou" else "a"
        found = (
            f"{entry} is {article} {name}"
            if entry
            else f"{what} holds {', '.join(needed) or 'an object'}"
        )
        raise TypeError(
            f"{path}: {found}, which torch.load(weights_only=True) refuses, so the file would not load back "
            f"safely; nothing was replaced. Store plain data instead: str(path), dataclasses.asdict(config), "
            f"vars(namespace), member.value of an enum; or, if you trust the class, allow it with "
            f"torch.serialization.add_safe_globals([{name or ', '.join(needed)}]) in every process that saves "
            "or loads the file."
        )

    return check


_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_MAGIC = (
    b"\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"  # pickled torch magic number (pre-zip format)
)


def _not_a_torch_file(head: bytes) -> str:
    """Why the first bytes ``head`` cannot start a ``torch.save`` file, or '' if they can."""
    if head.startswith(_ZIP_MAGIC):
        return ""
    if head.startswith(b"\x80") and _LEGACY_MAGIC in head[:32]:
        return ""  # the legacy (PyTorch < 1.6) format
    if head.startswith(b"\x80"):
        return (
            "a plain pickle file (written by pickle.dump, not torch.save), which torch.load cannot read; "
            "if you trust its source, open it with pickle.load and re-save the tensors with torch.save"
        )
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy .npy file; read it with numpy.load(path)"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file (Keras/h5py); read it with h5py"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip-compressed file; decompress it first"
    if (
        len(head) >= 9
        and head[8:9] == b"{"
        and int.from_bytes(head[:8], "little") < 100_000_000
    ):
        return "a safetensors file; read it with safetensors.torch.load_file(path)"
    if head.lstrip()[:1] in (b"{", b"["):
        return "a JSON/text file; check that the path points to the checkpoint, not to its metadata"
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the file itself; run git lfs pull"
    return (
        f"it starts with {head[:8]!r}, not with the zip header b'PK\\x03\\x04' that torch.save writes; "
        "check the path, or use an earlier checkpoint if this one was overwritten"
    )


def _is_foreign_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return not any(n.endswith("/data.pkl") for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def load_checkpoint(
    path: str | os.PathLike,
    map_location: Any = "cpu",
    weights_only: bool = True,
    *,
    mmap: bool = False,
) -> Any:
    """``torch.load`` with safe defaults and clear errors.

    ``mmap=True`` maps the file's tensor data instead of reading it into memory (pages are read
    when a tensor is used); it applies to the zip format ``torch.save`` writes since PyTorch 1.6,
    and a file in the older format is read as usual.

    Errors (``FileNotFoundError``, ``IsADirectoryError`` or ``CheckpointError``) name the file and
    the likely cause: a wrong path, a folder, an empty or truncated file (an interrupted save), a
    file that is not a PyTorch checkpoint, or one that safe loading refuses (with the globals it
    would need).

    Example::

        >>> import tempfile, torch
        >>> from pathlib import Path
        >>> from labs_utils.toolkit import load_checkpoint, save_checkpoint
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = Path(tmp.name) / "last.pth"
        >>> _ = save_checkpoint({"model": torch.nn.Linear(2, 2).state_dict(), "epoch": 3}, path)
        >>> ckpt = load_checkpoint(path)  # weights_only=True, map_location="cpu"
        >>> ckpt["epoch"], list(ckpt["model"]), ckpt["model"]["weight"].device
        (3, ['weight', 'bias'], device(type='cpu'))
        >>> empty = Path(tmp.name) / "empty.pth"
        >>> empty.touch()
        >>> load_checkpoint(empty)
        Traceback (most recent call last):
        ...
        labs_utils.toolkit.checkpoints.CheckpointError: ...empty.pth: the file is empty
        (0 bytes), probably a save that was interrupted; ...
        >>> tmp.cleanup()
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"load_checkpoint() needs a file path, got {type(path).__name__}; "
            "to read bytes in memory, wrap them in io.BytesIO and call torch.load"
        )
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such file; check the name and that relative paths start "
            "from the current folder"
        )
    if path.is_dir():
        hint = (
            " It holds a .metadata file: this is a torch.distributed.checkpoint folder; load it with "
            "torch.distributed.checkpoint.load or convert it with dcp_to_torch_save."
            if (path / ".metadata").exists()
            else " Give the path of a file inside it."
        )
        raise IsADirectoryError(f"{path}: is a folder, not a checkpoint file.{hint}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(
            f"{path}: the file is empty (0 bytes), probably a save that was interrupted; "
            "use an earlier checkpoint, and save with save_checkpoint() so this cannot happen"
        )
    if path.suffix == ".safetensors":
        raise CheckpointError(
            f"{path}: a .safetensors file is not a torch.save file; read it with "
            "safetensors.torch.load_file(path)"
        )
    with open(path, "rb") as f:
        head = f.read(64)
    not_torch = _not_a_torch_file(head)
    if not_torch:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint: {not_torch}")
    try:
        return torch.load(
            path,
            map_location=map_location,
            weights_only=weights_only,
            mmap=mmap and head.startswith(_ZIP_MAGIC),
        )
    except pickle.UnpicklingError as e:
        msg = str(e)
        if "Weights only load failed" in msg:
            try:
                needed = sorted(
                    torch.serialization.get_unsafe_globals_in_checkpoint(path)
                )
            except Exception:  # pragma: no cover - best effort
                needed = []
            what = f" It needs: {', '.join(needed)}." if needed else ""
            raise CheckpointError(
                f"{path}: refused by safe loading (weights_only=True): the file holds Python objects "
                f"other than tensors and plain containers.{what} If you trust the file's source, allow "
                "exactly those with torch.serialization.safe_globals([...]); never use "
                "weights_only=False on a file you did not make yourself."
            ) from e
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint ({msg.splitlines()[0]}); "
            "check that the path points to a file written by torch.save"
        ) from e
    except RuntimeError as e:
        msg = str(e)
        if (
            "central directory" in msg
            or "zip archive" in msg
            or isinstance(e.__cause__, zipfile.BadZipFile)
        ):
            raise CheckpointError(
                f"{path}: the file is truncated or is not a checkpoint ({size} bytes, "
                "no valid zip archive); it was probably cut off by an interrupted save or "
                "copy: use an earlier checkpoint or copy it again"
            ) from e
        if head.startswith(_ZIP_MAGIC) and _is_foreign_zip(path):
            raise CheckpointError(
                f"{path}: a zip archive, but not one written by torch.save (no */data.pkl "
                "entry); check that the path points to a checkpoint file"
            ) from e
        if "unexpected EOF" in msg:
            raise CheckpointError(
                f"{path}: the file is truncated ({size} bytes; {msg.splitlines()[0]}); it was "
                "probably cut off by an interrupted save or copy: use an earlier checkpoint "
                "or copy it again"
            ) from e
        if "CUDA" in msg and "deserialize" in msg:
            raise CheckpointError(
                f"{path}: the file was saved on a GPU and this machine has no CUDA; "
                "pass map_location='cpu'"
            ) from e
        raise CheckpointError(
            f"{path}: could not be loaded: {msg.splitlines()[0]}"
        ) from e
    except PermissionError as e:
        raise CheckpointError(
            f"{path}: no permission to read the file; check its owner and mode"
        ) from e
    except OSError as e:  # the zip reader fails this way on some cut-off archives
        raise CheckpointError(
            f"{path}: the file is truncated or damaged ({size} bytes; {type(e).__name__}: "
            f"{e.strerror or e}); it was probably cut off by an interrupted save or copy: use "
            "an earlier checkpoint or copy it again"
        ) from e
    except (
        EOFError,
        ValueError,
        IndexError,
        KeyError,
        AttributeError,
        ImportError,
    ) as e:
        raise CheckpointError(
            f"{path}: the file is truncated or is not a PyTorch checkpoint ({size} bytes; "
            f"{type(e).__name__}: {e}); check the path, or use an earlier checkpoint"
        ) from e
