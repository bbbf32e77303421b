"""Wrong and right answers for the checks in labs_utils/checks/nb14.py (test data):
WRONG pairs an answer with a piece of the hint it must get; RIGHT lists answers that pass."""

from __future__ import annotations

import copy
import struct
from collections.abc import Callable
from pathlib import Path

import torch

_LEGACY_HEAD = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"  # legacy torch.save: pickle protocol 2, magic number


def _wi_by_suffix(path):
    return {".safetensors": "safetensors", ".pth": "zip", ".pt": "zip"}.get(
        Path(path).suffix, "other"
    )


def _wi_solution_core(
    head: bytes,
    html: Callable[[bytes], bool],
    pickle_first: bool = False,
    legacy: Callable[[bytes], bool] = lambda h: h.startswith(_LEGACY_HEAD),
) -> str:
    if not head:
        return "empty"
    if head.startswith(b"version https://git-lfs.github.com/spec/"):
        return "lfs-pointer"
    if html(head):
        return "html"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if pickle_first and head[:1] == b"\x80":
        return "legacy"
    if len(head) > 8 and head[8:9] == b"{":
        return "safetensors"
    if legacy(head):
        return "legacy"
    return "other"


def _html_ok(head: bytes) -> bool:
    return (
        head.removeprefix(b"\xef\xbb\xbf")
        .lstrip()
        .lower()
        .startswith((b"<!doctype html", b"<html"))
    )


def _wi_strict_html(path):
    with open(path, "rb") as f:
        head = f.read(64)
    return _wi_solution_core(head, html=lambda h: h.startswith((b"<!DOCTYPE html", b"<html")))


def _wi_pickle_first(path):
    with open(path, "rb") as f:
        head = f.read(64)
    return _wi_solution_core(head, html=_html_ok, pickle_first=True)


def _wi_any_protocol_2_pickle(path):
    with open(path, "rb") as f:
        head = f.read(64)
    return _wi_solution_core(head, html=_html_ok, legacy=lambda h: h.startswith(b"\x80\x02"))


def _wi_index_error(path):
    with open(path, "rb") as f:
        head = f.read(64)
    if head[0] == 0x50 and head[:4] == b"PK\x03\x04":
        return "zip"
    return _wi_solution_core(head or b"?", html=_html_ok)


def _wi_text_mode(path):
    with open(path) as f:
        head = f.read(64)
    return _wi_solution_core(head.encode(), html=_html_ok)


def _wi_loads(path):
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(b"PK\x03\x04"):
        try:
            torch.load(path, weights_only=True)
        except Exception:
            pass
        return "zip"
    return _wi_solution_core(head, html=_html_ok)


def _wi_any_angle_bracket(path):
    with open(path, "rb") as f:
        head = f.read(64)
    return _wi_solution_core(
        head, html=lambda h: h.removeprefix(b"\xef\xbb\xbf").lstrip()[:1] == b"<"
    )


def _wi_pathlib_struct(path):
    data = Path(path).read_bytes()[:32]
    if len(data) == 0:
        return "empty"
    if data[:40].startswith(b"version https://git-lfs"):
        return "lfs-pointer"
    stripped = data[3:] if data[:3] == b"\xef\xbb\xbf" else data
    if (
        stripped.strip()[:14].lower() in (b"<!doctype html",)
        or stripped.strip()[:5].lower() == b"<html"
    ):
        return "html"
    if data[:4] == b"PK\x03\x04":
        return "zip"
    if len(data) >= 9 and data[8] == ord("{") and struct.unpack("<Q", data[:8])[0] > 0:
        return "safetensors"
    if data[:14] == _LEGACY_HEAD:
        return "legacy"
    return "other"


def _wi_match(path):
    with open(path, "rb") as f:
        head = f.read(100)
    text = head.lstrip(b"\xef\xbb\xbf").lstrip().lower()
    match head:
        case b"":
            return "empty"
        case _ if head.startswith(b"version https://git-lfs.github.com/spec/v1"):
            return "lfs-pointer"
        case _ if text.startswith(b"<!doctype html") or text.startswith(b"<html"):
            return "html"
        case _ if head[:4] == b"PK\x03\x04":
            return "zip"
        case _ if head[8:9] == b"{":
            return "safetensors"
        case _ if head.startswith(b"\x80\x02\x8a\x0a") and head[4:14] == _LEGACY_HEAD[4:]:
            return "legacy"
    return "other"


def _ac_solution(state_dict, key, in_channels):
    adapted = dict(state_dict)
    w = state_dict[key]
    if in_channels == 1:
        adapted[key] = w.sum(dim=1, keepdim=True)
    else:
        extra = w.new_zeros(w.shape[0], in_channels - w.shape[1], *w.shape[2:])
        adapted[key] = torch.cat([w, extra], dim=1)
    return adapted


def _ac_variant(
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    grow: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    in_place: bool = False,
    fixed_key: str | None = None,
) -> Callable:
    def answer(state_dict, key, in_channels):
        adapted = state_dict if in_place else dict(state_dict)
        key = fixed_key or key
        w = state_dict[key]
        if in_channels == 1:
            adapted[key] = (reduce or (lambda t: t.sum(dim=1, keepdim=True)))(w)
        else:
            adapted[key] = (
                grow
                or (
                    lambda t, n: torch.cat(
                        [t, t.new_zeros(t.shape[0], n - t.shape[1], *t.shape[2:])],
                        dim=1,
                    )
                )
            )(w, in_channels)
        return adapted

    return answer


_ac_mean = _ac_variant(reduce=lambda w: w.mean(dim=1, keepdim=True))


_ac_first_channel = _ac_variant(reduce=lambda w: w[:, :1].clone())


_ac_random_new = _ac_variant(
    grow=lambda w, n: torch.cat(
        [w, torch.randn(w.shape[0], n - w.shape[1], *w.shape[2:], dtype=w.dtype) * 0.1],
        dim=1,
    )
)


_ac_copy_channel = _ac_variant(
    grow=lambda w, n: torch.cat([w, w[:, :1].repeat(1, n - w.shape[1], 1, 1)], dim=1)
)


_ac_timm_scaled = _ac_variant(
    grow=lambda w, n: (
        torch.cat([w, w.new_zeros(w.shape[0], n - w.shape[1], *w.shape[2:])], dim=1)
        * w.shape[1]
        / n
    )
)


_ac_in_place = _ac_variant(in_place=True)


_ac_fixed_key = _ac_variant(fixed_key="features.0.weight")


def _ac_weight_only(state_dict, key, in_channels):
    return _ac_solution(state_dict, key, in_channels)[key]


def _ac_drops_key(state_dict, key, in_channels):
    return {k: v for k, v in state_dict.items() if k != key}


def _ac_pad(state_dict, key, in_channels):
    import torch.nn.functional as F

    out = copy.copy(state_dict)
    w = out[key]
    out[key] = (
        w.sum(1, keepdim=True)
        if in_channels == 1
        else F.pad(w, (0, 0, 0, 0, 0, in_channels - w.shape[1]))
    )
    return out


def _ac_loop(state_dict, key, in_channels):
    result = {}
    for name, tensor in state_dict.items():
        if name == key:
            out_c, in_c, kh, kw = tensor.shape
            if in_channels == 1:
                tensor = tensor.sum(dim=1).unsqueeze(1)
            else:
                bigger = torch.zeros(out_c, in_channels, kh, kw, dtype=tensor.dtype)
                bigger[:, :in_c] = tensor
                tensor = bigger
        result[name] = tensor
    return result


WRONG = {
    "what_is": [
        (_wi_by_suffix, "name says nothing"),
        (_wi_strict_html, "byte-order mark"),
        (_wi_pickle_first, "first byte can be 0x80"),
        (_wi_any_protocol_2_pickle, "plain pickle also starts"),
        (_wi_index_error, "no first byte"),
        (_wi_text_mode, "binary mode"),
        (_wi_loads, "called torch.load"),
        (_wi_any_angle_bracket, "XML document is not an HTML page"),
    ],
    "adapt_first_conv": [
        (_ac_mean, "averaged"),
        (_ac_first_channel, "first input channel"),
        (_ac_random_new, "start at zero"),
        (_ac_copy_channel, "copies of existing channels"),
        (_ac_timm_scaled, "timm"),
        (_ac_in_place, "changed the state_dict it was given"),
        (_ac_weight_only, "not the tensor alone"),
        (_ac_drops_key, "instead of dropping it"),
        (_ac_fixed_key, "`key` argument"),
    ],
}
RIGHT = {
    "what_is": [_wi_pathlib_struct, _wi_match],
    "adapt_first_conv": [_ac_solution, _ac_pad, _ac_loop],
}
