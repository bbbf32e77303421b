"""Benchmark of saving and loading a model of a realistic size.

    python -m tools.bench [--size-mb 300] [--repeats 5] [--dir build/bench]
    make bench

Compares ``labs_utils.toolkit.save_checkpoint`` (atomic: temp file, fsync, rename) with
plain ``torch.save``; ``load_checkpoint`` with ``torch.load``; ``torch.load(mmap=True)``; and
safetensors. Prints the median of several runs of each as a table. Files are written to
``--dir`` (on the disk you care about) and deleted afterwards. Loads read files the operating
system has just written, so they mostly come from the page cache: that measures PyTorch's own
cost, not the disk's.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from labs_utils.toolkit.render import Table, human_bytes

__all__ = ["make_state_dict", "run", "main"]


def make_state_dict(
    size_mb: float, *, layer_mb: float = 32.0, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A float32 state_dict of about ``size_mb`` MiB: square weight matrices of ~``layer_mb`` plus
    biases (smaller matrices when ``size_mb`` is below ``layer_mb``)."""
    if size_mb <= 0:
        raise ValueError(f"size_mb must be positive, got {size_mb}")
    layer_mb = min(layer_mb, size_mb)
    side = int((layer_mb * 2**20 / 4) ** 0.5)
    n_layers = max(1, round(size_mb / layer_mb))
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for i in range(n_layers):
        sd[f"layers.{i}.weight"] = torch.randn(side, side, generator=g)
        sd[f"layers.{i}.bias"] = torch.randn(side, generator=g)
    return sd


def _median_seconds(
    fn: Callable[[], object], repeats: int, before: Callable[[], None] | None = None
) -> float:
    """Median wall-clock time of ``repeats`` calls, after one unmeasured warm-up call.

    Call it with the garbage collector off (``run`` does), so no collection pause lands inside a
    measurement."""
    times = []
    for i in range(repeats + 1):
        if before:
            before()
        t0 = time.perf_counter()
        out = fn()
        if i:
            times.append(time.perf_counter() - t0)
        del out
    return statistics.median(times)


def run(size_mb: float = 300, repeats: int = 5, folder: str | os.PathLike = "build/bench") -> Table:
    """Run the benchmark and return the table (also usable from a notebook)."""
    from safetensors.torch import load_file, save_file

    from labs_utils.toolkit import load_checkpoint, save_checkpoint

    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sd = make_state_dict(size_mb)
    total = sum(t.numel() * t.element_size() for t in sd.values())
    plain, atomic, st = (
        folder / "plain.pth",
        folder / "atomic.pth",
        folder / "weights.safetensors",
    )

    def fresh(path: Path) -> Callable[[], None]:
        return lambda: path.unlink(missing_ok=True)

    rows: list[list[object]] = []
    # One collection before the first series, then the collector stays off until the last one
    # ends: no collection pause lands inside a measurement (a collection per series cost more
    # than a small benchmark's calls in a large process, such as a test run's).
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        t_save = _median_seconds(lambda: torch.save(sd, plain), repeats, fresh(plain))
        # overwrites the file in place
        t_save_over = _median_seconds(lambda: torch.save(sd, plain), repeats)
        t_atomic_nosync = _median_seconds(
            lambda: save_checkpoint(sd, atomic, fsync=False), repeats, fresh(atomic)
        )
        t_atomic = _median_seconds(lambda: save_checkpoint(sd, atomic), repeats, fresh(atomic))
        # replaces an existing file
        t_atomic_over = _median_seconds(lambda: save_checkpoint(sd, atomic), repeats)
        t_st_save = _median_seconds(lambda: save_file(sd, str(st)), repeats, fresh(st))
        t_load = _median_seconds(lambda: torch.load(plain), repeats)
        t_load_ck = _median_seconds(lambda: load_checkpoint(atomic), repeats)
        t_mmap = _median_seconds(lambda: torch.load(plain, mmap=True), repeats)

        def touch(loaded: dict[str, torch.Tensor]) -> float:
            return sum(float(t.sum()) for t in loaded.values())

        t_load_touch = _median_seconds(lambda: touch(torch.load(plain)), repeats)
        t_mmap_touch = _median_seconds(lambda: touch(torch.load(plain, mmap=True)), repeats)
        t_st_load = _median_seconds(lambda: load_file(str(st)), repeats)
        t_st_touch = _median_seconds(lambda: touch(load_file(str(st))), repeats)
        size_pth, size_st = plain.stat().st_size, st.stat().st_size
    finally:
        if was_enabled:
            gc.enable()
        shutil.rmtree(folder, ignore_errors=True)

    def pct(t: float) -> str:
        return f"{100 * (t / t_save - 1):+.0f}%"

    def rate(t: float) -> str:
        return f"{total / 2**30 / t:.2f} GiB/s"

    rows += [
        ["save", "torch.save (new file)", f"{t_save:.3f}", rate(t_save), "baseline"],
        [
            "save",
            "torch.save (overwrite in place)",
            f"{t_save_over:.3f}",
            rate(t_save_over),
            pct(t_save_over),
        ],
        [
            "save",
            "save_checkpoint, fsync=False (new)",
            f"{t_atomic_nosync:.3f}",
            rate(t_atomic_nosync),
            pct(t_atomic_nosync),
        ],
        [
            "save",
            "save_checkpoint (new file)",
            f"{t_atomic:.3f}",
            rate(t_atomic),
            pct(t_atomic),
        ],
        [
            "save",
            "save_checkpoint (replace)",
            f"{t_atomic_over:.3f}",
            rate(t_atomic_over),
            pct(t_atomic_over),
        ],
        [
            "save",
            "safetensors save_file",
            f"{t_st_save:.3f}",
            rate(t_st_save),
            pct(t_st_save),
        ],
        ["load", "torch.load", f"{t_load:.3f}", rate(t_load), "baseline"],
        [
            "load",
            "load_checkpoint",
            f"{t_load_ck:.3f}",
            rate(t_load_ck),
            f"{100 * (t_load_ck / t_load - 1):+.0f}%",
        ],
        [
            "load",
            "torch.load + read every tensor",
            f"{t_load_touch:.3f}",
            rate(t_load_touch),
            f"{100 * (t_load_touch / t_load - 1):+.0f}%",
        ],
        [
            "load",
            "torch.load(mmap=True)",
            f"{t_mmap:.3f}",
            "lazy",
            f"{100 * (t_mmap / t_load - 1):+.0f}%",
        ],
        [
            "load",
            "mmap=True + read every tensor",
            f"{t_mmap_touch:.3f}",
            rate(t_mmap_touch),
            f"{100 * (t_mmap_touch / t_load - 1):+.0f}%",
        ],
        [
            "load",
            "safetensors load_file",
            f"{t_st_load:.3f}",
            rate(t_st_load),
            f"{100 * (t_st_load / t_load - 1):+.0f}%",
        ],
        [
            "load",
            "load_file + read every tensor",
            f"{t_st_touch:.3f}",
            rate(t_st_touch),
            f"{100 * (t_st_touch / t_load - 1):+.0f}%",
        ],
    ]
    title = (
        f"{len(sd)} tensors, {human_bytes(total)} of float32; median of {repeats} runs "
        f"(files: .pth {human_bytes(size_pth)}, .safetensors {human_bytes(size_st)})"
    )
    notes = [
        "seconds are wall-clock medians; 'vs' compares with torch.save (new file) / torch.load",
        "save_checkpoint = temporary file + flush + fsync + os.replace. Its cost over torch.save is the "
        "fsync (waiting until the data is on the disk; torch.save returns once it is in the page cache) "
        "and, when a file is replaced, freeing the old file's blocks, which an in-place overwrite pays too; "
        "compare the fsync=False and 'overwrite in place' rows",
    ]
    return Table(
        ["op", "method", "seconds", "throughput", "vs baseline"],
        rows,
        title=title,
        notes=notes,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument(
        "--size-mb", type=float, default=300, help="model size in MiB (default 300)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="runs per measurement; the median is shown (default 5)",
    )
    parser.add_argument(
        "--dir",
        default="build/bench",
        help="scratch folder for the files (default build/bench)",
    )
    args = parser.parse_args(argv)
    if args.size_mb <= 0 or args.repeats < 1:
        parser.error("--size-mb must be positive and --repeats at least 1")
    try:
        print(run(args.size_mb, args.repeats, args.dir))
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
