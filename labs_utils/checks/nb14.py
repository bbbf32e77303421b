"""Checks for notebooks/14_error_field_guide.ipynb: ``what_is`` on files whose names give nothing
away (or the wrong answer), built to break the usual shortcuts; ``adapt_first_conv`` by what the
adapted weights do in models with other layer names, kernels, dtypes and channel counts."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import struct
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from . import Wrong, call_answer, exercise, same, spy

NB = "14_error_field_guide"


LABELS = ("empty", "lfs-pointer", "html", "zip", "safetensors", "legacy", "other")


def _saved(obj: Any, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, **kwargs)
    return buf.getvalue()


def _safetensors(header_len: int = 0) -> bytes:
    """A valid safetensors file with one float32 tensor; ``header_len`` pads the JSON header (with
    spaces, as the format allows) to that many bytes, so the first byte can be chosen."""
    data = np.arange(4, dtype=np.float32).tobytes()
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, len(data)]}})
    header = header.ljust(header_len).encode()
    return struct.pack("<Q", len(header)) + header + data


def _lfs(real: bytes) -> bytes:
    digest = hashlib.sha256(real).hexdigest()
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{digest}\nsize {len(real)}\n".encode()


def _file_cases() -> list[tuple[str, bytes, str, str]]:
    """(file name, bytes, expected label, what the file is: used in hints)."""
    gen = torch.Generator().manual_seed(0)
    zipped = _saved({"w": torch.randn(8, 8, generator=gen)})
    # fmt: off
    return [
        ("weights.bin", zipped, "zip", "a complete torch.save file"),
        ("last.pth", b"", "empty", "an empty file (0 bytes)"),
        ("pytorch_model.bin", _lfs(zipped), "lfs-pointer", "a Git LFS pointer"),
        ("model.safetensors", b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head></html>\n", "html", "an HTML page that starts with <!DOCTYPE html>"),
        ("ckpt.pt", b"\xef\xbb\xbf\r\n  <!doctype html>\n<html lang='en'></html>", "html", "an HTML page that starts with a byte-order mark, a blank line and a lower-case <!doctype html>"),
        ("best.pth", b"<HTML><BODY>Access denied</BODY></HTML>", "html", "an HTML page that starts with an upper-case <HTML>"),
        ("encoder.pth", zipped[:300], "zip", "a torch.save file cut after 300 bytes (still a zip by its first bytes)"),
        ("checkpoint.pth", _safetensors(), "safetensors", "a safetensors file"),
        ("model.pt", _safetensors(header_len=0x280), "safetensors", "a safetensors file whose header is 640 bytes long: its first bytes are 80 02 00 00, like a pickle's"),
        ("weights.pt", _saved({"w": torch.randn(4, generator=gen)}, _use_new_zipfile_serialization=False), "legacy", "a legacy-format torch.save file"),
        ("state.pt", pickle.dumps({"w": [1.0, 2.0]}, protocol=2), "other", "a plain pickle, protocol 2 (it starts with 80 02 but not with PyTorch's magic number)"),
        ("vocab.pth", pickle.dumps({"w": [1.0]}, protocol=4), "other", "a plain pickle, protocol 4"),
        ("config.bin", b'{"lr": 0.001, "epochs": 10}', "other", "a JSON config"),
        ("error.pth", b'<?xml version="1.0"?><Error><Code>AccessDenied</Code></Error>', "other", "an XML error document (not an HTML page)"),
        ("array.pth", b"\x93NUMPY\x01\x00v\x00{'descr': '<f4'}", "other", "a NumPy .npy file"),
        ("empty.pth", b"PK\x05\x06" + bytes(18), "other", "an empty zip archive (PK\\x05\\x06)"),
        ("info.bin", b"PKG-INFO\nName: demo\n", "other", "a text file starting 'PKG-INFO'"),
        ("config.pt", b"version: 2\nlr: 0.001\n", "other", "a text file starting 'version: 2'"),
        ("notes.pth", pickle.dumps("<html> page", protocol=4), "other", "a pickle holding the text '<html> page' (a plain pickle, not an HTML page)"),
    ]
    # fmt: on


_HINTS = {
    "empty": "an empty file has no first byte: check `if not head:` before looking at head[0]",
    "lfs-pointer": "a Git LFS pointer is text starting with b'version https://git-lfs.github.com/spec/'",
    "html": "an HTML page may start with a UTF-8 byte-order mark (b'\\xef\\xbb\\xbf'), whitespace, and <!doctype html> or <html> in any case: strip the mark and the whitespace, then compare in lower case",
    "zip": "every torch.save file since PyTorch 1.6, cut or not, starts with the zip header b'PK\\x03\\x04'",
    "safetensors": "a safetensors file starts with its header length (8 bytes, little-endian, so its first byte can be 0x80) and then b'{': check head[8:9] == b'{' before you look for a pickle",
    "legacy": "the legacy format starts with the 14 bytes shown in section 3: a pickle's b'\\x80\\x02' and then PyTorch's magic number",
}
_OTHER_HINTS = {  # what an "other" file was taken for -> why it is not that
    "legacy": "only the legacy torch.save head counts as 'legacy': a plain pickle also starts with b'\\x80', so compare the whole 14-byte head",
    "html": "an XML document is not an HTML page: look for <!doctype html or <html, not for any '<', and only at the start (after a byte-order mark and whitespace), not anywhere in the first bytes",
    "zip": "only b'PK\\x03\\x04' starts a torch.save file; other zip records (an empty archive's b'PK\\x05\\x06') and text that starts with 'PK' are 'other'",
    "lfs-pointer": "a Git LFS pointer starts with the whole line b'version https://git-lfs.github.com/spec/', not just b'version'",
    "safetensors": "a safetensors file has b'{' exactly at byte 8, after its 8-byte header length",
}


def _ask(fn: Any, path: Path, want: str, what: str) -> Any:
    """The learner's answer for one file; an error it raises becomes a hint that names the file."""
    try:
        return call_answer(fn, path)
    except Wrong as w:
        extra = f"; {_HINTS['empty']}" if want == "empty" else ""
        if "UnicodeDecodeError" in str(w):
            extra = "; open the file in binary mode, open(path, 'rb'), and compare bytes"
        raise Wrong(f"on {what} ({path.name}): {w}{extra}") from None


@exercise("what_is", notebook=NB)
def what_is(fn) -> str:
    """``fn(path)`` names a file from its first bytes, one of LABELS, without torch.load."""
    cases = _file_cases()
    with tempfile.TemporaryDirectory() as tmp, spy(torch, "load") as loads:
        folder = Path(tmp)
        # the same bytes under two names must get the same answer
        one, two = (folder / "download.safetensors", folder / "download.pth")
        for path in (one, two):
            path.write_bytes(cases[0][1])
        one, two = (_ask(fn, path, "zip", "a complete torch.save file") for path in (one, two))
        if one != two:
            raise Wrong(
                f"the same bytes got {one!r} as download.safetensors and {two!r} as download.pth: the name says nothing about what a file holds (a Git LFS pointer keeps the real file's name); read its first bytes"
            )
        for i, (name, data, want, what) in enumerate(cases):
            path = folder / f"{i:02d}" / name
            path.parent.mkdir()
            path.write_bytes(data)
            got = _ask(fn, path, want, what)
            if loads:
                raise Wrong(
                    "your function called torch.load: read the first bytes with open(path, 'rb').read(64) instead (loading is what fails on these files, and it can run code)"
                )
            labels = ", ".join(map(repr, LABELS))
            if not isinstance(got, str):
                raise Wrong(
                    f"return one of the strings {labels}; got {type(got).__name__} {got!r} for {what}"
                )
            if got not in LABELS:
                raise Wrong(f"{got!r} is not one of {labels} (for {what})")
            if got != want:
                other = "only the kinds in the table have a name; everything else is 'other'"
                hint = _HINTS[want] if want != "other" else _OTHER_HINTS.get(got, other)
                raise Wrong(f"{what} ({name}) should be {want!r}, you said {got!r}: {hint}")
    return f"{len(cases)} files named from their bytes alone, none loaded."


class StemNet(nn.Module):
    """Another layout than SmallCNN: the first conv at ``stem.0``, 5x5, no bias."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, bias=False), nn.ReLU(), nn.Conv2d(6, 3, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)


def _small_cnn(in_channels: int) -> nn.Module:
    from ..models import SmallCNN

    return SmallCNN(in_channels=in_channels)


_CONV_FIELDS = ("make", "key", "old", "new", "dtype", "size")


def _conv_cases() -> list[dict[str, Any]]:
    """Pretrained model factory, original and new channel counts, key, dtype, input size."""
    rows = [
        (_small_cnn, "features.0.weight", 3, 1, torch.float32, 16),
        (_small_cnn, "features.0.weight", 3, 4, torch.float32, 16),
        (StemNet, "stem.0.weight", 2, 1, torch.float64, 9),
        (StemNet, "stem.0.weight", 2, 5, torch.float64, 9),
        (_small_cnn, "features.0.weight", 1, 3, torch.float32, 16),
    ]
    return [dict(zip(_CONV_FIELDS, row)) for row in rows]


def _pretrained(case: dict[str, Any], seed: int) -> nn.Module:
    # the framework restores the learner's generators afterwards
    torch.manual_seed(seed)
    model = case["make"](case["old"]).to(case["dtype"])
    with torch.no_grad():  # BatchNorm statistics that are not the defaults, so a scale error shows
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.uniform_(-0.5, 0.5)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
    return model.eval()


def _describe_weight(got: torch.Tensor, w: torch.Tensor, new: int) -> str:
    """Name the usual mistakes from the adapted kernel itself."""
    old = w.shape[1]
    if new == 1:
        if torch.allclose(got, w.mean(dim=1, keepdim=True)):
            return f"you averaged the kernel over its input channels: the first layer's outputs are then 1/{old} of the pretrained model's; sum it (w.sum(dim=1, keepdim=True)) so that a gray image copied into every channel gives the same output"
        if torch.allclose(got, w[:, :1]):
            return "you kept only the kernel of the first input channel; sum the kernel over all its input channels, so that the information of every channel the model learned is kept"
        if torch.allclose(got, w.sum(dim=1, keepdim=True), rtol=1e-5, atol=1e-6):
            return ""
        return "for one channel, sum the kernel over its input channels: w.sum(dim=1, keepdim=True)"
    if not torch.equal(got[:, :old], w):
        if torch.allclose(got[:, :old], w * old / new):
            return f"you scaled the existing kernel by {old}/{new} (timm's way); the task keeps the existing channels' kernel unchanged and gives the new channels zeros, so the model starts exactly as the pretrained one"
        return "keep the kernel of the existing input channels unchanged: got[:, :old] must equal the old weight"
    extra = got[:, old:]
    if extra.abs().sum() != 0:
        copies = all(torch.equal(extra[:, i], w[:, i % old]) for i in range(extra.shape[1]))
        how = "copies of existing channels" if copies else "non-zero values"
        return f"the new input channels got {how}: they must start at zero (w.new_zeros(...)), otherwise whatever the new channel holds changes the pretrained model's output from the first step"
    return ""


def _case_hint(fn: Any, case: dict[str, Any], seed: int) -> str | None:
    pretrained = _pretrained(case, seed)
    given = dict(
        pretrained.state_dict()
    )  # the learner gets a plain dict holding the model's tensors
    snapshot = {k: v.clone() for k, v in given.items()}
    key, old, new = case["key"], case["old"], case["new"]
    where = f"{type(pretrained).__name__}, {key!r}, {old} -> {new} channels"
    try:
        out = call_answer(fn, given, key, new)
    except Wrong as w:
        fixed = "; this model's first convolution is elsewhere: use the `key` argument, not a fixed name"
        return f"{w} ({where}){fixed if 'KeyError' in str(w) else ''}"
    if isinstance(out, torch.Tensor):
        return f"return the whole state_dict with the adapted entry in it, not the tensor alone ({where})"
    if not isinstance(out, Mapping):
        return f"return the state_dict (a dict), got {type(out).__name__} ({where})"
    if not same(given, snapshot):
        return f"your function changed the state_dict it was given ({where}): build a new dict, adapted = dict(state_dict), and replace the entry there"
    missing, extra = [k for k in snapshot if k not in out], [k for k in out if k not in snapshot]
    if missing:
        return f"{missing[0]!r} is missing from your state_dict ({where}): keep every entry, and adapt the one at `key` instead of dropping it"
    if extra:
        return f"{extra[0]!r} was not in the state_dict ({where}): keep the keys as they are"
    changed = [k for k in snapshot if k != key and not same(out[k], snapshot[k])]
    if changed:
        return f"{changed[0]!r} changed ({where}); only the entry at `key` is adapted"
    w, got = snapshot[key], out[key]
    want_shape = (w.shape[0], new, *w.shape[2:])
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != want_shape:
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        fixed = " (did you write a fixed key instead of using the `key` argument?)"
        return f"the weight at {key!r} should have shape {want_shape}, got {shape} ({where}){fixed if shape == tuple(w.shape) else ''}"
    if got.dtype != w.dtype:
        return f"the weight at {key!r} became {got.dtype}, the model's is {w.dtype} ({where}); make new tensors with w.new_zeros(...) to keep the dtype"
    mistake = _describe_weight(got, w, new)
    if mistake:
        return f"{mistake} ({where})"
    target = case["make"](new).to(case["dtype"]).eval()
    target.load_state_dict(out)  # strict
    gen = torch.Generator().manual_seed(seed + 100)
    size, dtype = case["size"], case["dtype"]
    x = torch.rand(3, 1 if new == 1 else old, size, size, generator=gen, dtype=dtype)
    with torch.no_grad():
        if new == 1:
            want, mine = pretrained(x.expand(-1, old, -1, -1)), target(x)
        else:
            more = torch.rand(3, new - old, size, size, generator=gen, dtype=dtype) * 5
            want, mine = pretrained(x), target(torch.cat([x, more], dim=1))
    if not torch.allclose(mine, want, rtol=1e-4, atol=1e-5):
        return f"the adapted model's output differs from the pretrained model's ({where})"
    return None


@exercise("adapt_first_conv", notebook=NB)
def adapt_first_conv(fn) -> str:
    """``fn(state_dict, key, in_channels)`` adapts a first convolution to another number of input channels."""
    cases = _conv_cases()
    for i, case in enumerate(cases):
        if hint := _case_hint(fn, case, seed=i):
            raise Wrong(hint)
    return f"{len(cases)} models (other names, kernels, dtypes, 1 to 5 channels) load your weights strictly and give the pretrained model's outputs."
