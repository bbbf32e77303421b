"""Kill a function for real in the middle of its writes, and look at what it left on disk.

A *write call* is any call into C that can change a file or folder (``WRITE_CALLS``), seen with
``sys.setprofile`` however the code names it. ``kill_at(fn, args, k)`` forks; the child SIGKILLs
itself just before its ``k``-th write call (no ``finally`` runs, Python's buffers are lost), so the
same answer dies at the same place on every machine. Without a safe ``os.fork`` (Windows, macOS),
``watching(before_call=...)`` runs the function in this process and lets the caller look at the
disk before each write call."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

# builtins, io and os; then torch.save's zip writer (torch._C.PyTorchFileWriter)
WRITE_CALLS = frozenset(
    "open write writelines flush close truncate ftruncate replace rename renames link symlink unlink remove rmdir fsync fdatasync sendfile copy_file_range splice pwrite pwritev writev chmod fchmod mkdir write_record write_end_of_file".split()
)


def _label(fn: Any) -> str:
    """A readable name for a C function: 'os.replace', 'BufferedWriter.write', 'open'."""
    name = getattr(fn, "__name__", "?")
    if name in ("write_record", "write_end_of_file"):
        return f"PyTorchFileWriter.{name}"  # pybind11 methods have no useful __self__ type
    owner = getattr(fn, "__self__", None)
    module = getattr(fn, "__module__", None)
    if module in ("posix", "nt"):
        return f"os.{name}"
    if module in ("io", "_io", "builtins"):
        return name
    if owner is not None and not isinstance(owner, type(sys)):
        return f"{type(owner).__name__}.{name}"
    return name


@dataclass
class WriteTrace:
    """What ``watching`` saw: the write calls in order, the named arguments of each call of each
    watched function that ran, and (index into ``calls``, function) for each watched call."""

    calls: list[str] = field(default_factory=list)
    arguments: dict[Any, list[dict[str, Any]]] = field(default_factory=dict)
    order: list[tuple[int, Any]] = field(default_factory=list)


class _Profiler:
    def __init__(self, before_call: Callable[[int, str], None] | None, watch: Iterable[Any]):
        self.before_call = before_call
        self.watch = {getattr(f, "__code__", f): f for f in watch}
        self.trace = WriteTrace()
        self.count = 0

    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        if event == "c_call":
            if getattr(arg, "__name__", None) not in WRITE_CALLS:
                return
            name = _label(arg)
            k = self.count
            self.count += 1
            self.trace.calls.append(name)
            if self.before_call is not None:
                sys.setprofile(None)  # the callback's own writes are not the function's
                try:
                    self.before_call(k, name)
                finally:
                    sys.setprofile(self)
        elif event == "call" and frame.f_code in self.watch:
            fn = self.watch[frame.f_code]
            code = frame.f_code
            names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
            args = {k: v for k, v in frame.f_locals.items() if k in names}
            self.trace.arguments.setdefault(fn, []).append(args)
            self.trace.order.append((self.count, fn))


@contextlib.contextmanager
def watching(
    *functions: Any, before_call: Callable[[int, str], None] | None = None
) -> Iterator[WriteTrace]:
    """Record, while the block runs, every write call (``WRITE_CALLS``) and every call of the
    Python ``functions`` named here (with its arguments), however the code refers to them.
    ``before_call(k, name)`` runs just before the ``k``-th write call. Only the calling thread is
    watched; a profiler that was already installed is put back afterwards."""
    profiler = _Profiler(before_call, functions)
    previous = sys.getprofile()
    sys.setprofile(profiler)
    try:
        yield profiler.trace
    finally:
        sys.setprofile(previous)


def can_fork() -> bool:
    """True where ``kill_at`` can fork a child that shares this process's memory (Linux).
    macOS has ``os.fork``, but a forked child of a process that has used system frameworks
    may crash, so it takes the in-process path like Windows."""
    return hasattr(os, "fork") and sys.platform.startswith("linux")


@dataclass
class Kill:
    """One child: ``killed`` by our SIGKILL before write call ``moment`` (``call``), or it ended by
    itself (``error``: what it raised), ``hung`` past the timeout, or ``crashed`` on a signal."""

    moment: int
    killed: bool
    call: str = ""
    error: str | None = None
    hung: bool = False
    crashed: str | None = None
    seconds: float = 0.0


def _child(
    fn: Callable[..., Any], args: Sequence[Any], moment: int, wfd: int
) -> None:  # pragma: no cover
    """Runs in the forked child; never returns."""
    code = 3
    try:
        devnull = open(os.devnull, "w")
        sys.stdout = sys.stderr = devnull  # a notebook kernel's streams talk to its parent
        try:
            import torch

            torch.set_num_threads(1)
        except Exception:
            pass

        def before_call(k: int, name: str) -> None:
            if k == moment:
                os.write(wfd, b"K" + name.encode("utf-8", "replace") + b"\n")
                os.kill(os.getpid(), signal.SIGKILL)
                time.sleep(60)  # never reached: SIGKILL cannot be caught

        try:
            with watching(before_call=before_call):
                fn(*args)
            code = 0
        except BaseException as e:  # noqa: BLE001 - report anything the function raised
            msg = f"{type(e).__name__}: {e}".replace("\n", " ")[:500]
            os.write(wfd, b"E" + msg.encode("utf-8", "replace") + b"\n")
            code = 1
    finally:
        os._exit(code)


def kill_at(
    fn: Callable[..., Any], args: Sequence[Any], moment: int, *, timeout: float = 10.0
) -> Kill:
    """Fork; the child runs ``fn(*args)`` and is SIGKILLed just before its write call number
    ``moment`` (0-based). Waits for it and says what happened (``Kill``). Needs ``can_fork()``."""
    if not can_fork():
        raise RuntimeError("kill_at needs os.fork on Linux; use watching(before_call=...) here")
    r, w = os.pipe()
    start = time.perf_counter()
    with warnings.catch_warnings():
        # fork with threads (Python >= 3.12)
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        _child(fn, args, moment, w)
    os.close(w)
    hung = False
    deadline = start + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.perf_counter() > deadline:
            hung = True
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            break
        time.sleep(0.0005)
    with os.fdopen(r, "rb") as reader:
        report = reader.read().decode("utf-8", "replace")
    seconds = time.perf_counter() - start
    kill = Kill(moment, killed=False, hung=hung, seconds=seconds)
    for line in report.splitlines():
        if line.startswith("K"):
            kill.call = line[1:]
        elif line.startswith("E"):
            kill.error = line[1:]
    if hung:
        return kill
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGKILL and kill.call:
            kill.killed = True
        else:
            kill.crashed = signal.Signals(sig).name
    return kill
