"""Remake the "saved on Apple's MPS" checkpoint in data/ on a machine without MPS.

    python data/make_mps_checkpoint.py          # writes data/weights_mps.pth
    python data/make_mps_checkpoint.py --check  # remakes it in a temporary folder and compares

Made the same way as the CUDA files (see make_cuda_checkpoint.py): what a save on an MPS
device adds to a ``torch.save`` file is the storage's *location tag*, ``"mps"`` (PyTorch's own
``_mps_tag``), written into ``data.pkl``; the bytes are copied to host memory first, as for
CUDA. This script registers one more tagger with ``torch.serialization.register_package``, with
the highest priority, that answers ``"mps"`` while ``tagged_mps()`` is active and ``None`` (no
opinion) otherwise, and saves ordinary CPU tensors. ``torch.load`` then treats the file exactly
like one written on a Mac: without ``map_location``, on a machine without MPS, PyTorch's own
``_mps_deserialize`` calls ``storage.mps()``, which raises "Storage device not recognized: mps".

The weights are those of ``labs_utils.models.SimpleModel`` right after ``torch.manual_seed(0)``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.serialization

HERE = Path(__file__).resolve().parent
NAME = "weights_mps.pth"

_active = False


def _tagger(storage) -> str | None:
    return "mps" if _active else None


def _no_deserializer(storage, location: str):
    return None  # loading is left entirely to PyTorch's own deserializers


torch.serialization.register_package(0, _tagger, _no_deserializer)


@contextlib.contextmanager
def tagged_mps() -> Iterator[None]:
    """While active, ``torch.save`` writes ``"mps"`` as every storage's location tag."""
    global _active
    _active = True
    try:
        yield
    finally:
        _active = False


def make_state_dict() -> dict[str, torch.Tensor]:
    sys.path.insert(0, str(HERE.parent))
    from labs_utils.models import SimpleModel

    torch.manual_seed(0)
    return SimpleModel().state_dict()


def write(folder: Path) -> Path:
    path = folder / NAME
    with tagged_mps():
        torch.save(make_state_dict(), path)
    return path


def stored_locations(path: Path) -> set[str]:
    """The location tags in ``path``, read through a map_location callable (needs no MPS)."""
    seen: set[str] = set()

    def record(storage, location):
        seen.add(location)
        return storage

    torch.load(path, map_location=record, weights_only=True)
    return seen


def check() -> int:
    """Remake the file in a temporary folder and compare it with the one in data/."""
    with tempfile.TemporaryDirectory() as tmp:
        new, old = write(Path(tmp)), HERE / NAME
        a = torch.load(old, map_location="cpu", weights_only=True)
        b = torch.load(new, map_location="cpu", weights_only=True)
        same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        tags = stored_locations(old)
        print(f"{NAME}: tags {sorted(tags)}, same tensors as a fresh remake: {same}")
        return 0 if same and tags == {"mps"} else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="remake in a temporary folder and compare"
    )
    if parser.parse_args(argv).check:
        return check()
    path = write(HERE)
    size = path.stat().st_size
    tags = sorted(stored_locations(path))
    print(f"wrote {path.relative_to(HERE.parent)} ({size} bytes), tags {tags}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
