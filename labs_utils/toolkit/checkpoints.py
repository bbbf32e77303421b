"""Saving and loading checkpoint files safely.

* ``save_checkpoint(obj, path)``: atomic. The data goes to a temporary file in the same folder,
  is flushed and fsynced, then ``os.replace`` puts it in place (and the folder is fsynced). A
  crash at any moment leaves the old file or the new one, never a torn one. The file gets the
  mode ``torch.save`` would give it (the umask for a new file, the old file's mode otherwise).
* ``load_checkpoint(path)``: ``torch.load`` with safe defaults (``weights_only=True``,
  ``map_location="cpu"``) and errors that name the file and the likely cause.
* ``capture_rng_state()`` / ``restore_rng_state(state)``: every random number generator a
  training run draws from (python, numpy, torch, CUDA when present, and any
  ``torch.Generator`` you name, such as a DataLoader's), in a form that ``weights_only`` loading
  accepts.
* ``CheckpointManager(folder, metric="val_loss", mode="min")``: ``last.pth`` (to resume) on every
  save, ``best.pth`` (weights only, to deploy) when the metric improves, the newest ``keep_last``
  epoch files as history, and ``load_last()`` that resumes from the newest complete checkpoint.
  It refuses to save a state that ``weights_only=True`` loading could not read back.
"""
from __future__ import annotations

import contextlib
import math
import numbers
import os
import pickle
import random
import re
import shutil
import stat
import tempfile
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import torch

__all__ = ["CheckpointError", "atomic_write", "save_checkpoint", "load_checkpoint", "capture_rng_state",
           "restore_rng_state", "CheckpointManager", "SavedCheckpoint"]


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
            raise TypeError(f"expected a file path such as 'runs/last.pth', got {type(path).__name__}")
        self.path, self.fsync = Path(path), fsync
        if self.path.is_dir():
            raise IsADirectoryError(f"{self.path}: is a folder; give a file name inside it, "
                                    f"e.g. {self.path / 'last.pth'}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        mode = _mode_like_open(self.path)  # mkstemp makes the file 0o600, os.replace would keep that
        fd, name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
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
def atomic_write(path: str | os.PathLike, *, fsync: bool = True,
                 check: Callable[[Path], None] | None = None) -> Iterator[BinaryIO]:
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


def save_checkpoint(obj: Any, path: str | os.PathLike, *, fsync: bool = True,
                    check_safe_load: bool = False) -> Path:
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
    """
    with atomic_write(path, fsync=fsync, check=_safe_load_check(obj, Path(path)) if check_safe_load else None) as f:
        torch.save(obj, f)
    return Path(path)


def _qualname(x: Any) -> str:
    return f"{getattr(x, '__module__', '')}.{getattr(x, '__qualname__', getattr(x, '__name__', ''))}"


def _find_global(obj: Any, names: set[str], where: str, depth: int = 0) -> tuple[str, str]:
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
        found = f"{entry} is {article} {name}" if entry else f"{what} holds {', '.join(needed) or 'an object'}"
        raise TypeError(
            f"{path}: {found}, which torch.load(weights_only=True) refuses, so the file would not load back "
            f"safely; nothing was replaced. Store plain data instead: str(path), dataclasses.asdict(config), "
            f"vars(namespace), member.value of an enum; or, if you trust the class, allow it with "
            f"torch.serialization.add_safe_globals([{name or ', '.join(needed)}]) in every process that saves "
            "or loads the file.")
    return check


_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_MAGIC = b"\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"  # pickled torch magic number (pre-zip format)


def _not_a_torch_file(head: bytes) -> str:
    """Why the first bytes ``head`` cannot start a ``torch.save`` file, or '' if they can."""
    if head.startswith(_ZIP_MAGIC):
        return ""
    if head.startswith(b"\x80") and _LEGACY_MAGIC in head[:32]:
        return ""  # the legacy (PyTorch < 1.6) format
    if head.startswith(b"\x80"):
        return ("a plain pickle file (written by pickle.dump, not torch.save), which torch.load cannot read; "
                "if you trust its source, open it with pickle.load and re-save the tensors with torch.save")
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy .npy file; read it with numpy.load(path)"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file (Keras/h5py); read it with h5py"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip-compressed file; decompress it first"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:
        return "a safetensors file; read it with safetensors.torch.load_file(path)"
    if head.lstrip()[:1] in (b"{", b"["):
        return "a JSON/text file; check that the path points to the checkpoint, not to its metadata"
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the file itself; run git lfs pull"
    return (f"it starts with {head[:8]!r}, not with the zip header b'PK\\x03\\x04' that torch.save writes; "
            "check the path, or use an earlier checkpoint if this one was overwritten")


def _is_foreign_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return not any(n.endswith("/data.pkl") for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu", weights_only: bool = True, *,
                    mmap: bool = False) -> Any:
    """``torch.load`` with safe defaults and clear errors.

    ``mmap=True`` maps the file's tensor data instead of reading it into memory (pages are read
    when a tensor is used); it applies to the zip format ``torch.save`` writes since PyTorch 1.6,
    and a file in the older format is read as usual.

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
    with open(path, "rb") as f:
        head = f.read(64)
    not_torch = _not_a_torch_file(head)
    if not_torch:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint: {not_torch}")
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only,
                          mmap=mmap and head.startswith(_ZIP_MAGIC))
    except pickle.UnpicklingError as e:
        msg = str(e)
        if "Weights only load failed" in msg:
            try:
                needed = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
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
        if head.startswith(_ZIP_MAGIC) and _is_foreign_zip(path):
            raise CheckpointError(f"{path}: a zip archive, but not one written by torch.save (no */data.pkl "
                                  "entry); check that the path points to a checkpoint file") from e
        if "unexpected EOF" in msg:
            raise CheckpointError(f"{path}: the file is truncated ({size} bytes; {msg.splitlines()[0]}); it was "
                                  "probably cut off by an interrupted save or copy: use an earlier checkpoint "
                                  "or copy it again") from e
        if "CUDA" in msg and "deserialize" in msg:
            raise CheckpointError(f"{path}: the file was saved on a GPU and this machine has no CUDA; "
                                  "pass map_location='cpu'") from e
        raise CheckpointError(f"{path}: could not be loaded: {msg.splitlines()[0]}") from e
    except PermissionError as e:
        raise CheckpointError(f"{path}: no permission to read the file; check its owner and mode") from e
    except OSError as e:  # the zip reader fails this way on some cut-off archives
        raise CheckpointError(f"{path}: the file is truncated or damaged ({size} bytes; {type(e).__name__}: "
                              f"{e.strerror or e}); it was probably cut off by an interrupted save or copy: use "
                              "an earlier checkpoint or copy it again") from e
    except (EOFError, ValueError, IndexError, KeyError, AttributeError, ImportError) as e:
        raise CheckpointError(f"{path}: the file is truncated or is not a PyTorch checkpoint ({size} bytes; "
                              f"{type(e).__name__}: {e}); check the path, or use an earlier checkpoint") from e


# --------------------------------------------------------------------------------------------
# Random number generator states
# --------------------------------------------------------------------------------------------

_RNG_KEYS = ("python", "numpy", "torch", "cuda", "generators")


def _check_generators(generators: Mapping[str, torch.Generator] | None, where: str) -> dict[str, torch.Generator]:
    if generators is None:
        return {}
    if not isinstance(generators, Mapping):
        raise TypeError(f"{where}: generators must be a dict of name -> torch.Generator, e.g. "
                        f"{{'train_loader': train_loader.generator}}; got {type(generators).__name__}")
    for name, g in generators.items():
        if not isinstance(name, str):
            raise TypeError(f"{where}: generator names must be strings, got {name!r}")
        if not isinstance(g, torch.Generator):
            hint = (" (a DataLoader made without generator=... has loader.generator None: give it a "
                    "torch.Generator so its shuffling can be saved)" if g is None else "")
            raise TypeError(f"{where}: generators[{name!r}] is {type(g).__name__}, not a torch.Generator{hint}")
    return dict(generators)


def capture_rng_state(generators: Mapping[str, torch.Generator] | None = None) -> dict[str, Any]:
    """The state of every random number generator a training run draws from.

    Returns a dict with ``python`` (``random``), ``numpy`` (the legacy global generator that
    ``np.random.*`` uses), ``torch`` (CPU), ``cuda`` (one state per GPU, or ``None`` without CUDA)
    and ``generators``: the state of each ``torch.Generator`` in ``generators``, for example
    ``{"train_loader": train_loader.generator}``, which decides a DataLoader's shuffling.

    Everything is stored as tensors, ints, strings and tuples, so a checkpoint holding it loads
    with ``torch.load(..., weights_only=True)`` (numpy's own state holds an ``ndarray``, which
    safe loading refuses; here it is a tensor).
    """
    import numpy as np

    gens = _check_generators(generators, "capture_rng_state()")
    np_state = np.random.get_state(legacy=False)
    if np_state.get("bit_generator") != "MT19937":  # pragma: no cover - the global RandomState is MT19937
        raise ValueError(f"capture_rng_state() supports numpy's MT19937 global generator, got {np_state.get('bit_generator')}")
    cuda = None
    if torch.cuda.is_available():
        cuda = [s.clone() for s in torch.cuda.get_rng_state_all()]
    return {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": "MT19937",
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": cuda,
        "generators": {name: g.get_state() for name, g in gens.items()},
    }


def restore_rng_state(state: Mapping[str, Any], generators: Mapping[str, torch.Generator] | None = None) -> list[str]:
    """Put back what ``capture_rng_state`` returned; returns the names of what was restored.

    ``generators`` names the ``torch.Generator`` objects to restore (the same names as at
    capture time; each must be in ``state``). CUDA states are restored when this machine has
    CUDA with the same number of GPUs; a checkpoint saved with CUDA restores everything else
    on a CPU-only machine (a bit-exact resume across devices is not possible anyway).
    """
    import numpy as np

    if not isinstance(state, Mapping):
        raise TypeError(f"restore_rng_state() needs the dict from capture_rng_state(), got {type(state).__name__}")
    missing = [k for k in ("python", "numpy", "torch") if k not in state]
    if missing:
        raise ValueError(f"restore_rng_state(): not an RNG state from capture_rng_state() (missing {missing}; "
                         f"it has {sorted(map(str, state))[:8]}); pass checkpoint['rng'], not the whole checkpoint")
    gens = _check_generators(generators, "restore_rng_state()")
    saved_gens = state.get("generators") or {}
    unknown = [n for n in gens if n not in saved_gens]
    if unknown:
        raise ValueError(f"restore_rng_state(): no saved state for generator(s) {unknown}; the checkpoint has "
                         f"{sorted(saved_gens)}: use the names given to capture_rng_state(generators=...)")
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) != torch.cuda.device_count():
        raise ValueError(f"restore_rng_state(): the state holds {len(cuda)} CUDA generator(s) but this machine has "
                         f"{torch.cuda.device_count()} GPU(s); restore on the same number of GPUs, or drop them "
                         "with {**state, 'cuda': None}")
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    key = n["key"].numpy() if isinstance(n["key"], torch.Tensor) else np.asarray(n["key"])
    np.random.set_state((n["bit_generator"], key.astype(np.uint32), int(n["pos"]), int(n["has_gauss"]),
                         float(n["gauss"])))
    torch.set_rng_state(state["torch"].cpu())
    restored = ["python", "numpy", "torch"]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
        restored.append("cuda")
    for name, g in gens.items():
        g.set_state(saved_gens[name].cpu())
        restored.append(name)
    return restored


# --------------------------------------------------------------------------------------------
# last / best / history
# --------------------------------------------------------------------------------------------

def _numpy_path(obj: Any, where: str, depth: int = 0) -> str:
    """Where ``obj`` holds a value that ``weights_only`` loading refuses although it looks plain: a
    numpy object, or a subclass of str/int/float such as ``torch.__version__`` (a ``TorchVersion``).
    Returns a description such as ``"state['x'] is a numpy.float64"``, or ''. Tensors are not searched."""
    mod = type(obj).__module__
    if mod == "numpy" or mod.startswith("numpy."):
        return f"{where} is a {mod.split('.')[0]}.{type(obj).__name__}"
    for base in (str, float, int):
        if isinstance(obj, base) and type(obj) not in (base, bool):
            return (f"{where} is a {mod}.{type(obj).__name__} (a subclass of {base.__name__}); store "
                    f"{base.__name__}(x) instead")
    if depth > 20 or isinstance(obj, (torch.Tensor, str, bytes, int, float, bool, type(None))):
        return ""
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            found = _numpy_path(v, f"{where}[{k!r}]", depth + 1)
            if found:
                return found
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for i, v in enumerate(obj):
            found = _numpy_path(v, f"{where}[{i}]", depth + 1)
            if found:
                return found
    return ""


@dataclass(frozen=True)
class SavedCheckpoint:
    """What ``CheckpointManager.save`` did."""

    epoch: int
    metric: str
    value: float
    is_best: bool
    best_value: float
    best_epoch: int
    files: tuple[str, ...]

    def __repr__(self) -> str:
        star = " (new best)" if self.is_best else f" (best: {self.best_value:.4g} at epoch {self.best_epoch})"
        return f"epoch {self.epoch}: {self.metric}={self.value:.4g}{star} -> {', '.join(self.files)}"

    __str__ = __repr__


_EPOCH_FILE = re.compile(r"^epoch_(\d+)\.pth$")
_RECORD = "checkpoint_manager"  # last.pth[_RECORD], and best.pth's attribute _checkpoint_manager


class CheckpointManager:
    """Keep ``last.pth`` (to resume), ``best.pth`` (weights only, to deploy) and a short history.

    ``save(state, epoch=..., metrics=...)`` writes, each file atomically (``save_checkpoint``):

    * ``best.pth``: ``state[best_key]`` (by default the model's ``state_dict``; the whole state
      with ``best_key=None``), only when ``metrics[metric]`` improves on the best so far (lower
      for ``mode="min"``, higher for ``"max"``);
    * ``last.pth``: ``state`` plus ``epoch``, ``metrics`` and the manager's own record (the best
      value and epoch), every time;
    * ``epoch_NNNN.pth``: a hard link to (or copy of) that ``last.pth``; the newest ``keep_last``
      are kept (0 keeps none).

    ``best.pth`` loads as a plain state_dict (an ``OrderedDict``); it carries the same record as
    an attribute, ``_checkpoint_manager``, which ``load_state_dict`` ignores as it ignores
    ``_metadata``. So the best value always travels with the best weights.

    Before any file is replaced, ``last.pth`` is written to a temporary file and loaded back with
    ``weights_only=True``: a state that safe loading would refuse (a ``pathlib.Path``, a
    dataclass, an ``argparse.Namespace``, a NumPy value ...) raises a ``TypeError`` naming the
    entry, and every file stays as it was.

    After a crash, a new manager on the same folder calls ``load_last()``: it removes the
    temporary files of interrupted saves, returns the newest checkpoint that loads (``last.pth``,
    else the newest epoch file) and takes the best value from ``best.pth`` itself, so
    ``best.pth`` is only ever replaced by a better model, even after a crash between writing
    ``best.pth`` and ``last.pth``. Saving into a folder that already holds ``last.pth`` or
    ``best.pth`` without calling ``load_last()`` first is refused, so an old run's ``best.pth``
    is never overwritten by mistake.
    """

    LAST = "last.pth"
    BEST = "best.pth"

    def __init__(self, folder: str | os.PathLike, metric: str = "val_loss", mode: str = "min", keep_last: int = 2,
                 best_key: str | None = "model"):
        if not isinstance(folder, (str, os.PathLike)):
            raise TypeError(f"CheckpointManager() needs a folder path such as 'runs/exp1', got {type(folder).__name__}")
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise NotADirectoryError(f"{self.folder}: is a file; CheckpointManager needs a folder to keep "
                                     "last.pth and best.pth in")
        if not isinstance(metric, str) or not metric:
            raise TypeError(f"metric must be the name of a metric such as 'val_loss', got {metric!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' (lower {metric} is better, e.g. a loss) or 'max' (higher is "
                             f"better, e.g. accuracy), got {mode!r}")
        if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0:
            raise ValueError(f"keep_last must be an int >= 0 (how many epoch_NNNN.pth files to keep), got {keep_last!r}")
        if best_key is not None and not isinstance(best_key, str):
            raise TypeError(f"best_key must be the key of the weights in your state (e.g. 'model') or None, "
                            f"got {best_key!r}")
        self.metric, self.mode, self.keep_last, self.best_key = metric, mode, keep_last, best_key
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.skipped: list[str] = []  # why load_last() passed over a file
        self._resumed = False

    def __repr__(self) -> str:
        return (f"CheckpointManager({self.folder.as_posix()!r}, metric={self.metric!r}, mode={self.mode!r}, "
                f"keep_last={self.keep_last})")

    @property
    def last_path(self) -> Path:
        return self.folder / self.LAST

    @property
    def best_path(self) -> Path:
        return self.folder / self.BEST

    def epoch_paths(self) -> list[Path]:
        """The ``epoch_NNNN.pth`` files in the folder, oldest epoch first."""
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.folder.iterdir() if (m := _EPOCH_FILE.match(p.name))]
        return [p for _, p in sorted(found)]

    def _better(self, value: float) -> bool:
        if self.best_value is None:
            return True
        return value < self.best_value if self.mode == "min" else value > self.best_value

    # --- input checks: nothing is written before they pass --------------------------------------

    def _check_metrics(self, metrics: Any) -> float:
        """``metrics[self.metric]`` as a float, after checking that every metric will load back."""
        if not isinstance(metrics, Mapping):
            raise TypeError(f"metrics must be a dict such as {{'{self.metric}': 0.42}}, got {type(metrics).__name__}")
        if self.metric not in metrics:
            raise ValueError(f"metrics has no {self.metric!r} (it has {sorted(map(str, metrics))}); the manager "
                             f"picks best.pth by {self.metric!r}: add it, or create the manager with "
                             "metric='<one of those>'")
        for name, v in metrics.items():
            if isinstance(v, torch.Tensor):
                raise TypeError(f"metrics[{name!r}] is a tensor; store a plain Python number: "
                                f"metrics[{name!r}] = value.item()")
            found = _numpy_path(v, f"metrics[{name!r}]")
            if found:
                raise TypeError(f"{found}; store plain Python numbers (float(x) or x.item()): torch.load with "
                                "weights_only=True refuses it, so the checkpoint would not load")
            if not isinstance(v, (numbers.Real, str)):
                raise TypeError(f"metrics[{name!r}] is a {type(v).__name__}; metrics must be plain numbers or strings")
        value = metrics[self.metric]
        if isinstance(value, (bool, str)) or not isinstance(value, numbers.Real):
            raise TypeError(f"metrics[{self.metric!r}] must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            kept = (f"{self.LAST} still holds the previous save: resume from it, e.g. with a lower learning rate"
                    if self.last_path.exists() else "check the loss and learning rate")
            raise ValueError(f"metrics[{self.metric!r}] is {value}, not a finite number: training has probably "
                             f"diverged. Nothing was saved; {kept}")
        return value

    def _check_state(self, state: Any, epoch: Any, metrics: Mapping[str, Any]) -> None:
        if not isinstance(state, Mapping):
            raise TypeError(f"save() needs the training state as a dict (e.g. {{'model': model.state_dict(), "
                            f"'optimizer': optimizer.state_dict()}}), got {type(state).__name__}")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise TypeError(f"epoch must be a plain int >= 0, got {epoch!r} ({type(epoch).__name__}); "
                            "use int(epoch) for numpy or tensor values")
        found = _numpy_path(state, "state")
        if found:
            raise TypeError(f"{found}; convert it (float(x), int(x), str(x), torch.from_numpy(a)) before saving: "
                            "torch.load with weights_only=True refuses it, so the checkpoint would not load")
        if _RECORD in state:
            raise ValueError(f"state has a key {_RECORD!r}, which the manager writes itself; rename it")
        if "epoch" in state and state["epoch"] != epoch:
            raise ValueError(f"state['epoch'] is {state['epoch']!r} but epoch={epoch}; pass the epoch once, as epoch=")
        if "metrics" in state and state["metrics"] != dict(metrics):
            raise ValueError("state['metrics'] differs from metrics=...; pass the metrics once, as metrics=")
        if self.best_key is not None and self.best_key not in state:
            raise ValueError(f"state has no {self.best_key!r} entry for best.pth (it has {sorted(map(str, state))}); "
                             "create the manager with best_key='<the key of your model weights>', or best_key=None "
                             "to save the whole state as best.pth")
        if self.best_key is not None and not isinstance(state[self.best_key], Mapping):
            raise TypeError(f"state[{self.best_key!r}] is a {type(state[self.best_key]).__name__}, not a state_dict; "
                            f"best.pth holds weights to deploy: store model.state_dict() under {self.best_key!r}")

    # --- saving ------------------------------------------------------------------------------------

    def save(self, state: Mapping[str, Any], *, epoch: int, metrics: Mapping[str, float]) -> SavedCheckpoint:
        """Save ``last.pth`` (always), ``best.pth`` (when ``metrics[metric]`` improves) and the history.

        Wrong input, or a state that ``weights_only=True`` loading would refuse, raises before any
        file is replaced.
        """
        value = self._check_metrics(metrics)
        self._check_state(state, epoch, metrics)
        self._claim_folder()
        is_best = self._better(value)
        best_value, best_epoch = (value, epoch) if is_best else (self.best_value, self.best_epoch)
        record = {"metric": self.metric, "mode": self.mode, "best_value": best_value, "best_epoch": best_epoch}
        last = _StagedFile(self.last_path)  # written and checked first, put in place last
        try:
            torch.save({**state, "epoch": epoch, "metrics": dict(metrics), _RECORD: record}, last.file)
            last.close()
            _safe_load_check(state, self.last_path, "state")(last.tmp)
            if is_best:  # best.pth carries its record: a crash before last.pth is replaced loses nothing
                save_checkpoint(self._best_object(state, record), self.best_path)
                self.best_value, self.best_epoch = value, epoch
            last.commit()
        except BaseException:
            last.discard()
            raise
        files = [self.LAST] + self._keep_history(epoch) + ([self.BEST] if is_best else [])
        return SavedCheckpoint(epoch, self.metric, value, is_best, float(best_value), int(best_epoch), tuple(files))

    def _claim_folder(self) -> None:
        if not self._resumed:
            found = [p.name for p in (self.last_path, self.best_path) if p.exists()]
            if found:
                raise FileExistsError(f"{self.folder}: already holds {' and '.join(found)} from an earlier run; call "
                                      "load_last() first to resume it, or use an empty folder for a new run")
        self._resumed = True  # from now on this manager owns the folder
        self.folder.mkdir(parents=True, exist_ok=True)

    def _best_object(self, state: Mapping[str, Any], record: dict[str, Any]) -> OrderedDict:
        """What ``best.pth`` holds: the weights (or the whole state) with the record as an attribute."""
        weights = state[self.best_key] if self.best_key is not None else state
        best: OrderedDict = OrderedDict(weights)
        if hasattr(weights, "_metadata"):
            best._metadata = weights._metadata  # type: ignore[attr-defined]
        best._checkpoint_manager = dict(record)  # type: ignore[attr-defined]
        return best

    def _keep_history(self, epoch: int) -> list[str]:
        if not self.keep_last:
            return []
        epoch_file = self.folder / f"epoch_{epoch:04d}.pth"
        self._link_or_copy(self.last_path, epoch_file)
        for old in self.epoch_paths()[:-self.keep_last]:
            old.unlink(missing_ok=True)
        return [epoch_file.name]

    @staticmethod
    def _link_or_copy(src: Path, dst: Path) -> None:
        tmp = dst.with_name(f".{dst.name}.link.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)  # same bytes, no second write; os.replace makes it appear atomically
            os.replace(tmp, dst)
        except OSError:
            tmp.unlink(missing_ok=True)
            with atomic_write(dst) as f, open(src, "rb") as s:
                shutil.copyfileobj(s, f)

    # --- resuming ----------------------------------------------------------------------------------

    def remove_temp_files(self) -> int:
        """Delete temporary files left by saves that were interrupted (a killed process); returns how many."""
        if not self.folder.is_dir():
            return 0
        n = 0
        for p in self.folder.iterdir():
            if p.name.startswith(".") and p.name.endswith(".tmp") and p.is_file():
                p.unlink(missing_ok=True)
                n += 1
        return n

    def load_last(self, map_location: Any = "cpu", weights_only: bool = True) -> dict[str, Any] | None:
        """The newest complete checkpoint (``last.pth``, else the newest ``epoch_NNNN.pth``), or ``None``.

        Also removes the temporary files of interrupted saves and restores the best value and
        epoch, from the record ``best.pth`` carries (else from the checkpoint), so later saves
        replace ``best.pth`` only with a better model. Files that do not load are skipped with a
        warning (the reasons are kept in ``self.skipped``).
        """
        self._resumed = True
        self.skipped = []
        self.remove_temp_files()
        ckpt = self._newest_checkpoint(map_location, weights_only)
        record = (ckpt.get(_RECORD) or {}) if ckpt is not None else {}
        self._check_record(record, "the checkpoint")
        best_record = self._best_record(weights_only)
        if best_record is not None:
            self._check_record(best_record, self.BEST)
            record = best_record  # it describes the best.pth on disk, whatever happened after
        self.best_value, self.best_epoch = record.get("best_value"), record.get("best_epoch")
        return ckpt

    def _newest_checkpoint(self, map_location: Any, weights_only: bool) -> dict[str, Any] | None:
        for path in [self.last_path] + self.epoch_paths()[::-1]:
            if not path.exists():
                continue
            try:
                ckpt = load_checkpoint(path, map_location=map_location, weights_only=weights_only)
                if not isinstance(ckpt, Mapping) or "epoch" not in ckpt:
                    raise CheckpointError(f"{path}: not a CheckpointManager checkpoint (no 'epoch' entry)")
            except CheckpointError as e:
                self.skipped.append(str(e))
                warnings.warn(f"skipping {path.name}: {e}; trying an older checkpoint", stacklevel=3)
                continue
            return dict(ckpt)
        if self.skipped:
            raise CheckpointError(f"{self.folder}: no checkpoint in it loads ({len(self.skipped)} tried); the first "
                                  f"error: {self.skipped[0]}")
        return None

    def _best_record(self, weights_only: bool) -> dict[str, Any] | None:
        """The record ``best.pth`` carries, or ``None`` (no ``best.pth``, or one written without it)."""
        if not self.best_path.exists():
            return None
        try:  # mmap: the record is in the pickle, the weights are not read
            best = load_checkpoint(self.best_path, weights_only=weights_only, mmap=True)
        except CheckpointError as e:
            warnings.warn(f"{self.BEST} does not load ({e}); the best value comes from {self.LAST}", stacklevel=3)
            return None
        record = getattr(best, "_checkpoint_manager", None)
        return dict(record) if isinstance(record, Mapping) else None

    def _check_record(self, record: Mapping[str, Any], where: str) -> None:
        if record.get("metric", self.metric) != self.metric or record.get("mode", self.mode) != self.mode:
            raise ValueError(f"{self.folder}: {where} was saved tracking {record.get('metric')!r} "
                             f"({record.get('mode')}), but this manager tracks {self.metric!r} ({self.mode}); "
                             "create it with the same metric and mode")

    def load_best(self, map_location: Any = "cpu", weights_only: bool = True) -> Any:
        """What ``best.pth`` holds (by default the model's ``state_dict``)."""
        return load_checkpoint(self.best_path, map_location=map_location, weights_only=weights_only)
