"""What a file is, told from its bytes: the one place where the toolkit recognises files.

``load_checkpoint``, ``inspect_checkpoint`` and ``convert_to_safetensors`` all ask this module,
so they name the same files the same way. Nothing here unpickles: it reads the first bytes of
a file and, for a zip archive, its directory and version record.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import torch

__all__ = ["ZIP_MAGIC", "LEGACY_MAGIC", "sniff", "kind"]
__all__ += ["file_problem", "zip_problem", "other_format", "explain_load_error"]

ZIP_MAGIC = b"PK\x03\x04"
# torch.save's legacy format starts with the pickled magic number 0x1950a86a20f9469cfc6c
# (torch/serialization.py, MAGIC_NUMBER) as a LONG1 of 10 bytes, right after the PROTO opcode
# with the default protocol 2 (other protocols put a FRAME between them).
LEGACY_MAGIC = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
_LFS_HEAD = b"version https://git-lfs.github.com/spec/"
_BOM = b"\xef\xbb\xbf"
_MARKUP = (b"<!doctype html", b"<html", b"<head", b"<?xml", b"<!--", b"<body")
# records torch.save writes before data.pkl (and torch.jit.save / torch.export.save too)
_TORCH_RECORDS = {
    "version",
    ".data/version",
    "byteorder",
    ".data/serialization_id",
    ".format_version",
}
_NO_PERMISSION = "no permission to read the file; check its owner and mode (ls -l)"
_TRUNCATED = (
    "it was probably cut off by an interrupted save or copy: use an earlier checkpoint or "
    "copy it again"
)


def sniff(path: Path, error: type[Exception]) -> tuple[int, bytes]:
    """The size and first bytes of ``path``: ``FileNotFoundError``, ``IsADirectoryError`` (naming a
    ``torch.distributed.checkpoint`` folder as such), or ``error`` (one line, naming the file and
    the fix) when it cannot be read or is no loadable checkpoint (``file_problem``)."""
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such file; check the name and that relative paths start "
            "from the current folder"
        )
    if path.is_dir():
        hint = (
            " It holds a .metadata file: this is a torch.distributed.checkpoint folder; load it "
            "with torch.distributed.checkpoint.load or convert it with dcp_to_torch_save."
            if (path / ".metadata").exists()
            else " Give the path of a file inside it."
        )
        raise IsADirectoryError(f"{path}: is a folder, not a checkpoint file.{hint}")
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except PermissionError:
        raise error(f"{path}: {_NO_PERMISSION}") from None
    problem = file_problem(path, size, head)
    if problem:
        raise error(problem)
    return size, head


def kind(head: bytes, size: int | None = None) -> str:
    """``"zip"``, ``"legacy"``, ``"pickle"``, ``"safetensors"`` or ``"other"``, from the first bytes."""
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if len(head) >= 9 and head[8:9] == b"{":
        n = int.from_bytes(head[:8], "little")
        if 0 < n <= (size - 8 if size is not None else 100_000_000):
            return "safetensors"
    if head.startswith(b"\x80"):
        return "legacy" if LEGACY_MAGIC in head[:32] else "pickle"
    return "other"


def _text_field(pattern: str, text: str) -> str:
    m = re.search(pattern, text, re.IGNORECASE | re.DOTALL)
    return " ".join(m.group(1).split())[:60] if m else ""


def file_problem(path: Path, size: int, head: bytes) -> str:
    """One line naming a file that is no loadable checkpoint and the fix, or '' (``zip_problem``
    too for a zip archive)."""
    if head.startswith(ZIP_MAGIC):
        return zip_problem(path, size)
    if size == 0:
        return (
            f"{path}: the file is empty (0 bytes): a save, download or copy that was "
            "interrupted before writing anything; use an earlier checkpoint, or download or "
            "copy it again"
        )
    if head.startswith(_LFS_HEAD):
        real = _text_field(r"\nsize (\d+)", head.decode("utf-8", "replace"))
        real_file = f"the real file ({int(real):,} bytes)" if real else "the real file"
        return (
            f"{path}: a Git LFS pointer ({size} bytes of text), not the checkpoint: {real_file} "
            f'was never downloaded; run `git lfs pull --include="{path.name}"` (or `git lfs '
            "pull`) in the repository, then check the file again"
        )
    text = head.removeprefix(_BOM).lstrip()
    if text[:1] == b"<" and text[:64].lower().startswith(_MARKUP):
        return _markup_message(path, size, text.decode("utf-8", "replace"))
    return ""


def _markup_message(path: Path, size: int, text: str) -> str:
    low = text.lower()
    if low.startswith("<?xml") and "<html" not in low:
        code = _text_field(r"<Code>(.*?)</Code>", text)
        told = f" (it says {code})" if code else ""
        return (
            f"{path}: an XML document ({size:,} bytes), not a checkpoint: probably an error "
            f"response from the storage service{told} saved in place of the file; fix the access "
            "(credentials, a signed or public URL), download it again and compare its size and "
            "sha256 with the published ones"
        )
    title = _text_field(r"<title[^>]*>(.*?)</title>", text)
    told = f" titled {title!r}" if title else ""
    return (
        f"{path}: an HTML page ({size:,} bytes){told}, not a checkpoint: the download saved a web "
        "page (a login, error or confirmation page, or the page that shows the file) instead of "
        "the file; download it again from the file's raw or direct link and compare its size and "
        "sha256 with the published ones"
    )


def zip_problem(path: Path, size: int) -> str:
    """Why a zip archive is not a loadable ``torch.save`` file, or '' when it may be one."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return (
            f"{path}: truncated: a zip archive (the format torch.save writes) that ends before "
            f"its central directory ({size:,} bytes): a save, download or copy that was cut "
            "short; use an earlier checkpoint, or copy or download it again and compare its "
            "sha256 with the source's"
        )
    newer = _newer_version(path, names)
    if newer:
        return newer
    foreign = (
        f"{path}: a zip archive, but not one written by torch.save (no */data.pkl entry); "
        "check that the path points to a checkpoint file"
    )
    tops = {n.split("/", 1)[0] for n in names if "/" in n}
    records = {n.split("/", 1)[1] for n in names if "/" in n}
    if len(tops) != 1:
        return foreign
    if "constants.pkl" in records or any(r.startswith("code/") for r in records):
        return (
            f"{path}: a TorchScript program (torch.jit.save), not a torch.save checkpoint: "
            "torch.jit.load runs its code, trust it like code (PyTorch's SECURITY.md: like an "
            "executable from that source); open it only if you trust where it came from, or ask "
            "for the weights as .safetensors"
        )
    if "archive_format" in records or any(r.startswith("models/") for r in records):
        return (
            f"{path}: a torch.export program (.pt2), not a torch.save checkpoint: open it with "
            "torch.export.load, which unpickles parts of the file (never one from an untrusted "
            "source), or ask for the weights as .safetensors"
        )
    if "data.pkl" in records:
        return ""
    if records & _TORCH_RECORDS:
        return (
            f"{path}: torch.save began this file but never finished it (no data.pkl record: "
            "pickling the object failed, or the process died); use an earlier checkpoint, and "
            "save to a temporary file and os.replace it so a failed save cannot destroy the "
            "last good one"
        )
    return foreign


def _newer_version(path: Path, names: list[str]) -> str:
    """The archive's version record is above what this PyTorch reads (the C++ reader, which
    reads the archive's directory and records only, gives the verdict), or ''."""
    try:
        torch._C.PyTorchFileReader(str(path))
        return ""
    except Exception as e:  # other damage: left to the loader, whose message names it
        m = re.search(
            r"file with version (\d+), but the maximum supported version for reading is (\d+)",
            str(e),
        )
    if not m:
        return ""
    record = next((n for n in names if n.endswith("/.data/version")), None) or next(
        (n for n in names if n.endswith("/version") and n.count("/") == 1), "version"
    )
    here = torch.__version__.split("+")[0]
    return (
        f"{path}: written by a newer PyTorch: its {record.split('/', 1)[-1]} record says "
        f"{m.group(1)}, and this PyTorch ({here}) reads up to {m.group(2)}; load it with a newer "
        "PyTorch (pip install -U torch), or ask for the weights as .safetensors, which any "
        "version reads"
    )


def other_format(head: bytes) -> str:
    """What a file that ``torch.load`` cannot read is, and how to read it; '' for a torch.save file."""
    found = kind(head)
    if found in ("zip", "legacy"):
        return ""
    if found == "safetensors":
        return "a safetensors file; read it with safetensors.torch.load_file(path)"
    if found == "pickle":
        return (
            "a plain pickle file (written by pickle.dump, not torch.save), which torch.load "
            "cannot read; if you trust its source, open it with pickle.load and re-save the "
            "tensors with torch.save"
        )
    for magic, what in (
        (b"\x93NUMPY", "a NumPy .npy file; read it with numpy.load(path)"),
        (b"\x89HDF", "an HDF5 file (Keras/h5py); read it with h5py"),
        (b"\x1f\x8b", "a gzip-compressed file; decompress it first"),
    ):
        if head.startswith(magic):
            return what
    if head.lstrip()[:1] in (b"{", b"["):
        return "a JSON/text file; check that the path points to the checkpoint, not to its metadata"
    return (
        f"it starts with {head[:8]!r}, not with the zip header b'PK\\x03\\x04' that torch.save "
        "writes; check the path, or use an earlier checkpoint if this one was overwritten"
    )


def explain_load_error(path: Path, size: int, error: BaseException) -> str:
    """One line for the exception ``torch.load`` raised on ``path``: the file and the likely cause."""
    msg = str(error)
    first = (msg.splitlines() or [type(error).__name__])[0]
    if isinstance(error, pickle.UnpicklingError):
        if "Weights only load failed" in msg:
            try:
                needed = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
            except Exception:  # pragma: no cover - best effort
                needed = []
            what = f" It needs: {', '.join(needed)}." if needed else ""
            return (
                f"{path}: refused by safe loading (weights_only=True): the file holds Python "
                f"objects other than tensors and plain containers.{what} If you trust the file's "
                "source, allow exactly those with torch.serialization.safe_globals([...]); never "
                "use weights_only=False on a file you did not make yourself."
            )
        return (
            f"{path}: not a PyTorch checkpoint ({first}); check that the path points to a file "
            "written by torch.save"
        )
    if isinstance(error, RuntimeError):
        if "central directory" in msg or "zip archive" in msg:
            return (
                f"{path}: the file is truncated or is not a checkpoint ({size} bytes, no valid "
                f"zip archive); {_TRUNCATED}"
            )
        if "unexpected EOF" in msg:
            return f"{path}: the file is truncated ({size} bytes; {first}); {_TRUNCATED}"
        if "CUDA" in msg and "deserialize" in msg:
            return (
                f"{path}: the file was saved on a GPU and this machine has no CUDA; "
                "pass map_location='cpu'"
            )
        return f"{path}: could not be loaded: {first}"
    if isinstance(error, PermissionError):
        return f"{path}: {_NO_PERMISSION}"
    if isinstance(error, OSError):
        # the zip reader fails this way on some cut-off archives
        return (
            f"{path}: the file is truncated or damaged ({size} bytes; {type(error).__name__}: "
            f"{error.strerror or error}); {_TRUNCATED}"
        )
    return (
        f"{path}: the file is truncated or is not a PyTorch checkpoint ({size} bytes; "
        f"{type(error).__name__}: {error}); check the path, or use an earlier checkpoint"
    )
