"""Saving and loading checkpoint files safely: ``save_checkpoint`` (atomic, otherwise what
``torch.save`` does), ``load_checkpoint`` (safe defaults, errors that name the file and the
cause) and ``remove_abandoned_temp_files`` (what killed saves left behind).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import secrets
import stat
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import torch

from . import formats

__all__ = ["CheckpointError", "atomic_write", "save_checkpoint", "load_checkpoint"]
__all__ += ["safe_load_check", "remove_abandoned_temp_files", "nested_values"]


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
        >>> tmp.cleanup()
    """


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # e.g. Windows cannot open folders
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# A lock tells a save in progress from the leftover of a killed one. Windows has no fcntl, but
# an open file cannot be deleted there, which protects it as well.
try:
    import fcntl
except ImportError:
    fcntl = None  # type: ignore[assignment]


def _target(path: Path) -> Path:
    """The file a save to ``path`` replaces: ``path`` itself, or what it links to (as ``open``
    and so ``torch.save`` write through a symlink)."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _check_writable(path: Path, target: Path) -> None:
    """Refuse what ``open(path, "wb")`` (so ``torch.save``) would refuse, before anything is written."""
    if target.exists() and not os.access(target, os.W_OK):
        mode = stat.S_IMODE(os.stat(target).st_mode)
        raise PermissionError(
            f"{path}: the file is write-protected (mode {mode:#o}) and torch.save would refuse "
            f"to overwrite it too; nothing was changed. Make it writable (chmod u+w {path}) to "
            "replace it, or save under another name"
        )
    folder = target.parent
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(
            f"{path}: no permission to create files in {folder}; the atomic save writes a "
            "temporary file next to the checkpoint and renames it: make the folder writable, "
            "or save elsewhere"
        )


def _lock(fd: int, *, wait: bool) -> bool:
    """Take the exclusive lock on ``fd``; False without locks, or (``wait=False``) if another holds it."""
    if fcntl is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        return True
    except OSError:
        return False


def _still_named(fd: int, name: str) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(name))
    except OSError:
        return False


def remove_abandoned_temp_files(folder: str | os.PathLike) -> int:
    """Delete the temporary files (``.<name>.*.tmp``) in ``folder`` left by killed saves; returns how
    many. A save in progress holds a lock on its file, which is left alone.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for p in folder.iterdir():
        if not (p.name.startswith(".") and p.name.endswith(".tmp") and p.is_file()):
            continue
        with contextlib.suppress(OSError):
            if fcntl is None:  # Windows refuses to delete a file another process has open
                p.unlink()
                removed += 1
                continue
            fd = os.open(p, os.O_RDONLY)
            try:
                if _lock(fd, wait=False) and _still_named(fd, str(p)):
                    p.unlink()
                    removed += 1
            finally:
                os.close(fd)
    return removed


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike, *, fsync: bool = True, check: Callable[[Path], None] | None = None
) -> Iterator[BinaryIO]:
    """Open a temporary file next to ``path`` for writing; on success it replaces ``path``.

    The data is fsynced before ``os.replace`` and the folder after it, so readers see the old file
    or the complete new one; on any error (or if ``check(tmp_path)`` raises) the temporary file is
    removed and ``path`` is left as it was. As with ``open(path, "wb")``, missing folders are
    created, the file gets the mode it would have had, a symlink is written through and a
    write-protected file is refused. ``fsync=False`` skips waiting for the disk (still atomic for
    a killed process, not after a power loss).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"expected a file path such as 'runs/last.pth', got {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(
            f"{path}: is a folder; give a file name inside it, e.g. {path / 'last.pth'}"
        )
    target = _target(path)
    _check_writable(path, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # a new name; mode 0o666 minus the umask, as open(path, "wb") (so torch.save) gives a new file
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        name = str(target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp")
        with contextlib.suppress(FileExistsError):
            fd = os.open(name, flags, 0o666)
            if not (_lock(fd, wait=True) and not _still_named(fd, name)):
                break
            os.close(fd)  # a cleanup removed it before it was locked: make another
    tmp, f = Path(name), os.fdopen(fd, "wb")
    try:
        with contextlib.suppress(FileNotFoundError):  # and open keeps a replaced file's mode
            os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
        yield f
        f.flush()
        if fsync:
            os.fsync(f.fileno())
        if fcntl is None:
            f.close()  # elsewhere it stays open and locked until it has its final name
        if check is not None:
            check(tmp)
        os.replace(tmp, target)
        f.close()
        if fsync:
            _fsync_dir(target.parent)  # makes the rename itself durable
    except BaseException:
        f.close()
        tmp.unlink(missing_ok=True)
        raise


def save_checkpoint(
    obj: Any, path: str | os.PathLike, *, fsync: bool = True, check_safe_load: bool = False
) -> Path:
    """Save ``obj`` with ``torch.save`` atomically to ``path`` (see ``atomic_write``); returns the path.

    If saving fails, the previous file stays and no temporary file is left. ``check_safe_load=True``
    loads the written file back with ``weights_only=True`` (mmap, no tensor data read) before it
    replaces ``path``, and refuses with a ``TypeError`` naming the entry what that load refuses.

    Example::

        >>> import tempfile, torch
        >>> from pathlib import Path
        >>> from labs_utils.toolkit import load_checkpoint, save_checkpoint
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = Path(tmp.name) / "runs" / "last.pth"  # runs/ is created
        >>> save_checkpoint({"model": torch.nn.Linear(2, 2).state_dict(), "epoch": 3}, path).name
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
        path, fsync=fsync, check=safe_load_check(obj, Path(path)) if check_safe_load else None
    ) as f:
        torch.save(obj, f)
    return Path(path)


def _qualname(x: Any) -> str:
    return (
        f"{getattr(x, '__module__', '')}.{getattr(x, '__qualname__', getattr(x, '__name__', ''))}"
    )


def nested_values(obj: Any, where: str, depth: int = 0) -> Iterator[tuple[str, Any]]:
    """``(where, value)`` for ``obj`` and every value inside its dicts, lists, tuples and sets,
    ``where`` written like ``obj['config'][0]``. Tensors, strings and bytes are not searched."""
    yield where, obj
    if depth > 20 or isinstance(obj, (torch.Tensor, str, bytes)):
        return
    if isinstance(obj, Mapping):
        items: Any = ((f"{where}[{k!r}]", v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple, set, frozenset)):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(obj))
    else:
        return
    for w, v in items:
        yield from nested_values(v, w, depth + 1)


def _find_global(obj: Any, names: set[str], where: str) -> tuple[str, str]:
    """Where ``obj`` holds an instance of one of the classes ``names`` (or one of them itself):
    ``("obj['config']['out_dir']", "pathlib.PosixPath")``, or ``("", "")``."""
    for w, v in nested_values(obj, where):
        for name in (_qualname(type(v)), _qualname(v) if callable(v) else ""):
            if name in names:
                return w, name
    return "", ""


def safe_load_check(obj: Any, path: Path, what: str = "obj") -> Callable[[Path], None]:
    """A ``check`` for ``atomic_write``: the file written for ``path`` must load with
    ``weights_only=True``; else a ``TypeError`` names the entry of ``obj`` that is refused."""

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


def load_checkpoint(
    path: str | os.PathLike,
    map_location: Any = "cpu",
    weights_only: bool = True,
    *,
    mmap: bool = False,
) -> Any:
    """``torch.load`` with safe defaults (``weights_only=True``, ``map_location="cpu"``), clear errors.

    ``mmap=True`` maps a zip-format file's tensor data instead of reading it (an old-format file is
    read as usual). Errors name the file and the likely cause: a wrong path, a folder, no read
    permission, an empty or truncated file, another format (TorchScript, a Git LFS pointer, a web
    page ...), or what safe loading refuses.

    Example::

        >>> import tempfile, torch
        >>> from pathlib import Path
        >>> from labs_utils.toolkit import load_checkpoint, save_checkpoint
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = Path(tmp.name) / "last.pth"
        >>> _ = save_checkpoint({"model": torch.nn.Linear(2, 2).state_dict(), "epoch": 3}, path)
        >>> ckpt = load_checkpoint(path)
        >>> ckpt["epoch"], list(ckpt["model"]), ckpt["model"]["weight"].device
        (3, ['weight', 'bias'], device(type='cpu'))
        >>> tmp.cleanup()
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"load_checkpoint() needs a file path, got {type(path).__name__}; "
            "to read bytes in memory, wrap them in io.BytesIO and call torch.load"
        )
    path = Path(path)
    size, head = formats.sniff(path, CheckpointError)
    if path.suffix == ".safetensors":
        raise CheckpointError(
            f"{path}: a .safetensors file is not a torch.save file; read it with "
            "safetensors.torch.load_file(path)"
        )
    other = formats.other_format(head)
    if other:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint: {other}")
    try:
        return torch.load(
            path,
            map_location=map_location,
            weights_only=weights_only,
            mmap=mmap and head.startswith(formats.ZIP_MAGIC),
        )
    except _LOAD_ERRORS as e:
        raise CheckpointError(formats.explain_load_error(path, size, e)) from e


_LOAD_ERRORS = (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError, IndexError)
_LOAD_ERRORS += (KeyError, AttributeError, ImportError)  # what torch.load raises on a bad file
