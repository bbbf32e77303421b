"""Checks for notebooks/12_capstone_lab.ipynb, fault 6: a save that can tear, judged by a real
SIGKILL at its write calls (crash.kill_at)."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

import torch

from . import Wrong, crash, exercise, same, spy
from .nb12 import load_cpu, run_saver


class _Exploding:
    """Pickling this raises: a stand-in for a save that fails with an exception."""

    def __reduce__(self):
        raise RuntimeError("simulated failure in the middle of torch.save")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _state(path: Path, old: bytes, new: dict) -> str:
    """What a crash left at ``path``: 'old', 'new', 'missing', or 'torn'."""
    if not path.exists():
        return "missing"
    data = path.read_bytes()
    if data == old:
        return "old"
    try:
        got = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:
        return "torn"
    return "new" if same(got, new) else "torn"


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _tear(state: str, k: int, call: str, path: Path, old: bytes) -> tuple:
    """What a crash just before write call ``k`` (``call``) left: last.pth ``state`` ('torn' or
    'missing'), its size, and the other files of the folder that hold the previous checkpoint."""
    size = path.stat().st_size if path.exists() else 0
    others = [p for p in path.parent.iterdir() if p != path and p.is_file()]
    return state, k, call, size, sorted(p.name for p in others if p.read_bytes() == old)


def _tear_hint(tear: tuple, n_calls: int, trace: crash.WriteTrace, copied: bool, real: bool) -> str:
    state, k, call, size, backups = tear
    when = f"{'a SIGKILL' if real else 'a crash'} just before its {_ordinal(k + 1)} of {n_calls} write calls ({call})"
    if state == "missing":
        return f"{when} left no last.pth at all: your function removes (or renames away) the old file before the new one is in place. os.replace puts the new file over the old one in one step; do not delete the old one first"
    torn = f"{when} left last.pth torn ({size} bytes that do not load)"
    if backups:
        return f"{torn}. The backup {backups[0]} is still there, but the code that would restore it never runs when the process is killed, and every loader looks only at last.pth. Leave last.pth alone until the new file is complete: write a temporary file in the same folder and os.replace it over last.pth"
    saves = trace.arguments.get(torch.serialization.save, [])
    if saves and all(isinstance(a.get("f"), io.BytesIO) for a in saves):
        return f"{torn}, and the previous checkpoint is gone. Serialising into memory first protects against a pickling error, not against a kill: writing the bytes still truncates last.pth first. Write them to a temporary file in the same folder and os.replace it over last.pth"
    if copied:
        return f"{torn}. Copying the finished temporary file over last.pth rewrites last.pth in place; os.replace renames the temporary file over it in one step"
    return f"{torn}, and the previous checkpoint is gone: your function writes over last.pth in place. Write the new checkpoint to a temporary file in the same folder, then os.replace it over last.pth"


def _labs_utils_savers() -> list[Any]:
    from ..toolkit.checkpoints import atomic_write, save_checkpoint
    from ..toolkit.manager import CheckpointManager

    return [
        save_checkpoint,
        getattr(atomic_write, "__wrapped__", atomic_write),
        CheckpointManager.save,
    ]


@exercise("capstone_save_atomically", notebook="04_checkpoints_and_resume")
def capstone_save_atomically(fn) -> str:
    """``fn(obj, path)`` saves so that a crash at any moment leaves the previous file or the complete
    new one, a failed save leaves the previous file and no litter, and the data is fsynced before
    the rename. The disk is examined before each write call of an in-process save, then a forked
    child running ``fn`` is SIGKILLed where that tore the file (or around its rename)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ckpt"
        folder.mkdir()
        path = folder / "last.pth"
        first = {"epoch": 1, "w": torch.arange(1000.0)}
        run_saver(fn, first, path, path=path)
        try:
            loaded = load_cpu(path)
        except Exception as e:
            raise Wrong(f"the saved file does not load ({type(e).__name__})") from None
        if not same(loaded, first):
            raise Wrong("the saved file does not hold the object you were given")

        # 1. a normal save over an existing file, watched: which calls, which folder, fsync
        third = {"epoch": 3, "w": torch.ones(1000)}
        watch = [torch.serialization.save, shutil.copyfile, *_labs_utils_savers()]
        before = path.read_bytes()
        torn: list[tuple] = []  # the first moment a crash would leave last.pth torn or gone

        def observe(k: int, call: str) -> None:  # what the disk holds now, a kill now would leave
            state = "" if torn else _state(path, before, third)
            if state in ("torn", "missing"):
                torn.append(_tear(state, k, call, path, before))

        seen = crash.WriteTrace()

        def watched(*args: Any) -> Any:  # only the answer's own calls, as in the killed child
            nonlocal seen
            with crash.watching(*watch, before_call=observe) as seen:
                return fn(*args)

        def synced(fd: Any) -> tuple[int, int, bool]:  # where in the write calls, inode, a dir?
            st = os.fstat(fd if isinstance(fd, int) else fd.fileno())
            return len(seen.calls), st.st_ino, stat.S_ISDIR(st.st_mode)

        with contextlib.ExitStack() as stack:
            replaces, renames = (stack.enter_context(spy(os, n)) for n in ("replace", "rename"))
            syncs = [
                stack.enter_context(spy(os, n, note=synced))
                for n in ("fsync", "fdatasync")
                if hasattr(os, n)  # os.fdatasync is not on every system
            ]
            run_saver(watched, third, path, path=path)
        fsynced = sorted(noted for calls in syncs for _, _, noted in calls)
        if any(f in seen.arguments for f in _labs_utils_savers()):
            raise Wrong(
                "the task asks you to write the atomic save yourself, with tempfile and os.replace, not with labs_utils (save_checkpoint does exactly this; the point is to see how)"
            )
        if any(Path(a[0]).resolve().parent != folder.resolve() for a, _, _ in replaces + renames):
            raise Wrong(
                "the temporary file was written in another folder: os.replace is atomic only within one file system, so write the temporary file next to the checkpoint"
            )
        if not same(load_cpu(path), third):
            raise Wrong("after a second save, last.pth does not hold the new object")
        old = path.read_bytes()
        saved_inode, saved_mode = os.stat(path).st_ino, stat.S_IMODE(os.stat(path).st_mode)
        copies = seen.arguments.get(shutil.copyfile, [])
        copied = any(Path(a.get("dst", "")).resolve() == path.resolve() for a in copies)

        # 2. crashes: a real kill where the in-process run saw the file torn (else around the
        # rename); without fork, what the in-process run saw decides alone
        second = {"epoch": 2, "w": torch.zeros(1000)}
        moments = [torn[0][1]] if torn else _confirm_moments(seen.calls)
        for moment in moments if crash.can_fork() else []:
            _reset(folder, path, old)
            kill = crash.kill_at(fn, (second, path), moment)
            if kill.hung:
                raise Wrong(
                    "your function did not finish within 10 s when the check ran it in a child process"
                )
            state = _state(path, old, second) if kill.killed else ""
            if state in ("torn", "missing"):
                tear = _tear(state, moment, kill.call, path, old)
                raise Wrong(_tear_hint(tear, len(seen.calls), seen, copied, real=True))
        if torn:
            raise Wrong(_tear_hint(torn[0], len(seen.calls), seen, copied, real=False))

        # 3. a save that fails with an exception
        _reset(folder, path, old)
        elsewhere = set(Path(tempfile.gettempdir()).glob("last.pth*"))  # not the answer's
        try:
            fn({"epoch": 2, "w": torch.zeros(1000), "boom": _Exploding()}, path)
        except Exception:
            pass
        else:
            raise Wrong(
                "your function swallowed the error of a failed save: let it propagate so the caller knows"
            )
        if _state(path, old, second) != "old":
            raise Wrong(
                "a save that failed with an exception left last.pth changed: write to a temporary file in the same folder, then os.replace it over the old one"
            )
        litter = sorted(p.name for p in folder.iterdir() if p.name != "last.pth")
        stray = sorted(set(Path(tempfile.gettempdir()).glob("last.pth*")) - elsewhere)
        for p in stray:
            p.unlink(missing_ok=True)
        if litter or stray:
            raise Wrong(
                f"the failed save left a temporary file behind ({(litter or [s.name for s in stray])[0]}); remove it when the save fails, and keep it in the same folder so os.replace stays atomic"
            )

        # 4. durability: the data reaches the disk before the name points at it
        replace_at = [i for i, name in enumerate(seen.calls) if name in ("os.replace", "os.rename")]
        synced = [pos for pos, inode, is_dir in fsynced if inode == saved_inode and not is_dir]
        if not (fsynced or "os.fsync" in seen.calls or "os.fdatasync" in seen.calls):
            raise Wrong(
                "a kill leaves your last.pth intact, but nothing is fsynced: after a power cut the rename can reach the disk before the data, leaving an empty last.pth. Call f.flush() and os.fsync(f.fileno()) on the temporary file before os.replace"
            )
        if fsynced and not any(replace_at and pos <= replace_at[-1] for pos in synced):
            raise Wrong(
                "the temporary file was not fsynced before os.replace: a kill leaves it intact, but after a power cut the rename can reach the disk before the data. Call f.flush() and os.fsync(f.fileno()) before os.replace"
            )
    tips = []
    if os.name == "posix":
        want = 0o666 & ~_umask()
        if saved_mode != want:
            tips.append(
                f"last.pth has mode {oct(saved_mode)} where torch.save would give {oct(want)} (mkstemp and NamedTemporaryFile create owner-only files); os.chmod(tmp, 0o666 & ~umask) before os.replace keeps it readable by a serving process running as another user"
            )
        if not any(is_dir for _, _, is_dir in fsynced):
            tips.append(
                "fsync the folder after os.replace (os.open(folder, os.O_RDONLY), os.fsync, os.close) so that the rename itself survives a power cut"
            )
    message = "a crash at any of its write calls leaves the previous checkpoint or the complete new one, a failed save keeps the old file and leaves no temporary file behind, and the data is fsynced."
    if tips:
        lead = (
            " Production code adds two details: "
            if len(tips) == 2
            else " One detail for production code: "
        )
        message += lead + "; ".join(tips) + "."
    return message


def _reset(folder: Path, path: Path, old: bytes) -> None:
    """The folder as before a save: last.pth alone, holding the previous checkpoint."""
    for p in folder.iterdir():
        if p != path:
            p.unlink()
    if not path.exists() or path.read_bytes() != old:
        path.write_bytes(old)


def _confirm_moments(calls: list[str]) -> list[int]:
    """Where to kill an answer that no observed moment tore: its first write call, the middle one,
    and just before and after each rename (where a save that is not atomic shows it)."""
    picks = {0, len(calls) // 2}
    for i, call in enumerate(calls):
        if call in ("os.replace", "os.rename"):
            picks.update({i, i + 1})
    return sorted(p for p in picks if p < len(calls))
