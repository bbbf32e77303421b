"""Checks of notebooks/14_error_field_guide.ipynb: the notebook's answers pass; answers that rely on
a file's name, read text, skip a case, or get the adaptation almost right are refused with a hint
that names the mistake; the learner's inputs are left alone."""

from __future__ import annotations

import os
import tempfile
from collections import OrderedDict

import torch

from labs_utils.checks import check, nb14


def what_is(path):  # the notebook's solution
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        return "empty"
    if head.startswith(b"version https://git-lfs.github.com/spec/"):
        return "lfs-pointer"
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html")):
        return "html"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if len(head) > 8 and head[8:9] == b"{":
        return "safetensors"
    if head.startswith(b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"):
        return "legacy"
    return "other"


def adapt_first_conv(state_dict, key, in_channels):  # the notebook's solution
    adapted = dict(state_dict)
    w = state_dict[key]
    if in_channels == 1:
        adapted[key] = w.sum(dim=1, keepdim=True)
    else:
        extra = w.new_zeros(w.shape[0], in_channels - w.shape[1], *w.shape[2:])
        adapted[key] = torch.cat([w, extra], dim=1)
    return adapted


def test_notebook_answers_pass():
    assert check.what_is(what_is)
    assert check.adapt_first_conv(adapt_first_conv)


# --- what_is ---------------------------------------------------------------------------------


def test_the_cases_are_what_they_claim():
    """The check's files really are what its table says (judged by the notebook's solution and by
    PyTorch and safetensors themselves), so a hint never blames a right answer."""
    from safetensors.torch import load_file

    labels = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, data, want, _) in enumerate(nb14._file_cases()):
            path = os.path.join(tmp, f"{i}_{name}")
            with open(path, "wb") as f:
                f.write(data)
            assert what_is(path) == want, name
            labels[want] = labels.get(want, 0) + 1
            if want == "safetensors":
                assert list(load_file(path)) == ["w"]
            if want == "legacy":
                assert set(torch.load(path, weights_only=True)) == {"w"}
    assert set(labels) == set(nb14.LABELS) and labels["html"] >= 3 and labels["other"] >= 4


def test_reading_too_few_bytes_is_refused():
    """Eight bytes cannot hold the LFS prefix, a doctype, or the b'{' after safetensors' length."""

    def eight_bytes(path):
        with open(path, "rb") as f:
            head = f.read(8)
        probe = os.path.join(os.path.dirname(path), "_first8")
        with open(probe, "wb") as f:
            f.write(head)
        return what_is(probe)

    result = check.what_is(eight_bytes)
    assert result.status == "wrong" and "should be 'lfs-pointer'" in result.message


def test_labels_must_be_the_tables_strings():
    result = check.what_is(lambda path: what_is(path).upper())
    assert result.status == "wrong" and "is not one of" in result.message
    result = check.what_is(lambda path: what_is(path).encode())
    assert result.status == "wrong" and "return one of the strings" in result.message


def test_a_check_that_loads_only_zips_is_still_caught():
    def loads_zips(path):
        label = what_is(path)
        if label == "zip":
            try:
                torch.load(path, weights_only=True)
            except Exception:
                pass
        return label

    result = check.what_is(loads_zips)
    assert result.status == "wrong" and "torch.load" in result.message


# --- adapt_first_conv ----------------------------------------------------------------------------


def test_an_ordered_dict_and_new_tensors_are_fine():
    def ordered(state_dict, key, in_channels):
        out = OrderedDict((k, v.clone()) for k, v in state_dict.items())
        w = out[key]
        if in_channels == 1:
            out[key] = w.sum(1, keepdim=True)
        else:
            out[key] = torch.cat(
                [
                    w,
                    torch.zeros(
                        w.shape[0],
                        in_channels - w.shape[1],
                        *w.shape[2:],
                        dtype=w.dtype,
                    ),
                ],
                1,
            )
        return out

    assert check.adapt_first_conv(ordered)


def test_float32_zeros_into_a_float64_model_are_accepted_when_cat_promotes():
    """torch.cat promotes float32 zeros to the weight's float64: the dtype stays right, so this passes."""

    def default_dtype_zeros(state_dict, key, in_channels):
        out = dict(state_dict)
        w = out[key]
        out[key] = (
            w.sum(1, keepdim=True)
            if in_channels == 1
            else torch.cat([w, torch.zeros(w.shape[0], in_channels - w.shape[1], *w.shape[2:])], 1)
        )
        return out

    assert check.adapt_first_conv(default_dtype_zeros)


def test_a_weight_cast_to_float32_is_refused_with_the_dtype():
    def cast(state_dict, key, in_channels):
        out = adapt_first_conv(state_dict, key, in_channels)
        out[key] = out[key].float()
        return out

    result = check.adapt_first_conv(cast)
    assert (
        result.status == "wrong"
        and "torch.float32" in result.message
        and "float64" in result.message
    )


def test_changing_another_entry_is_named():
    def touches_bias(state_dict, key, in_channels):
        out = adapt_first_conv(state_dict, key, in_channels)
        bias_key = key.replace("weight", "bias")
        if bias_key in out:
            out[bias_key] = out[bias_key] * 0
        return out

    result = check.adapt_first_conv(touches_bias)
    assert result.status == "wrong" and "features.0.bias' changed" in result.message


def test_an_answer_that_only_handles_the_notebooks_counts_is_refused():
    def only_gray_and_rgbd(state_dict, key, in_channels):
        out = dict(state_dict)
        w = out[key]
        if in_channels == 1:
            out[key] = w.sum(1, keepdim=True)
        else:  # assumes 3 -> 4
            out[key] = torch.cat([w, w.new_zeros(w.shape[0], 1, *w.shape[2:])], 1)
        return out

    result = check.adapt_first_conv(only_gray_and_rgbd)
    assert result.status == "wrong" and "should have shape" in result.message


def test_the_learners_state_dict_is_left_alone_by_the_check():
    seen = []

    def records(state_dict, key, in_channels):
        seen.append({k: v.clone() for k, v in state_dict.items()})
        return adapt_first_conv(state_dict, key, in_channels)

    assert check.adapt_first_conv(records)
    assert len(seen) == len(nb14._conv_cases())
