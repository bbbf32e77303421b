"""Every non-OK case of the second simulated cohort (shared/reviews/learner-simulation-2.md, at
65af244): 8 false accepts, 1 false reject and 11 misleading hints. Each answer is the learner's
code as it was run, defined in a namespace like the learner notebook's (with its globals: a
`scaler`, `Net`, `job`); a false accept must now be rejected, the false reject accepted, and each
misleading hint must name the real mistake (and no longer the wrong one)."""

import math
import types
from pathlib import Path

import pytest
import torch

from labs_utils.checks import check

# (review id, check, the answer's source, the name it defines, "correct"/"wrong",
#  fragments the message must hold, fragments it must not hold)
CASES = [
    # --- false accepts -------------------------------------------------------------------
    (
        "nb05_amp_checkpoint_3",
        "amp_checkpoint",
        """
def amp_checkpoint(model, optimizer, scheduler, scaler, epoch):
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if "scaler" in globals() else None,
            "epoch": epoch}
""",
        "amp_checkpoint",
        "wrong",
        ["globals()"],
        [],
    ),
    (
        "nb06_map_two_gpus_to_cpu_9",
        "map_two_gpus_to_cpu",
        """
class _AllCPU(dict):
    def get(self, key, default=None):
        return "cpu"
    def __getitem__(self, key):
        return "cpu"
    def __contains__(self, key):
        return True
two_gpus_to_cpu = _AllCPU()
""",
        "two_gpus_to_cpu",
        "wrong",
        ["'cuda:0'"],
        [],
    ),
    (
        "nb10_predict_no_trace_12",
        "predict_no_trace",
        """
def predict(model, images):
    model.eval()
    model.requires_grad_(False)
    with torch.no_grad():
        return model(images).argmax(1)
""",
        "predict",
        "wrong",
        ["requires_grad"],
        [],
    ),
    (
        "nb11_saved_shapes_9",
        "saved_shapes",
        """
def saved_shapes(dcp_dir):
    md = dcp.FileSystemReader(str(dcp_dir)).read_metadata()
    return {k.lstrip("model."): tuple(v.size)
            for k, v in md.state_dict_metadata.items()
            if k.startswith("model.") and hasattr(v, "size")}
""",
        "saved_shapes",
        "wrong",
        ["lstrip"],
        [],
    ),
    (
        "nb12_capstone_load_safely_9",
        "capstone_load_safely",
        """
import pickle
def load_model_card(path):
    needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    if needed - {"labs_utils.capstone.RunInfo"}:
        raise pickle.UnpicklingError(f"refusing {sorted(needed)}")
    return torch.load(path, weights_only=False)
""",
        "load_model_card",
        "wrong",
        ["weights_only=false"],
        [],
    ),
    (
        "nb13_export_gated_8",
        "export_gated",
        """
def _patched_forward(self, x):
    return torch.cond(x.mean() > 0, lambda t: self.hot(t), lambda t: self.cold(t), (x,))
def export_gated(model, example):
    type(model).forward = _patched_forward
    return torch.export.export(model, (example,))
""",
        "export_gated",
        "wrong",
        ["class"],
        [],
    ),
    (
        "nb14_what_is_6",
        "what_is",
        r"""
LEGACY_HEAD = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"
def what_is(path):
    head = open(path, "rb").read(64)
    if not head:
        return "empty"
    if head.startswith(b"version https://git-lfs.github.com/spec/"):
        return "lfs-pointer"
    t = head.removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    if t.startswith((b"<!doctype html", b"<html")):
        return "html"
    if head.startswith(b"PK"):
        return "zip"
    if head[8:9] == b"{":
        return "safetensors"
    if head.startswith(LEGACY_HEAD):
        return "legacy"
    return "other"
""",
        "what_is",
        "wrong",
        ["pk\\x03\\x04"],
        [],
    ),
    (
        "nb14_what_is_7",
        "what_is",
        r"""
LEGACY_HEAD = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"
def what_is(path):
    head = open(path, "rb").read(64)
    if not head:
        return "empty"
    if head.startswith(b"version"):
        return "lfs-pointer"
    if b"<html" in head.lower() or b"<!doctype html" in head.lower():
        return "html"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head[8:9] == b"{":
        return "safetensors"
    if head.startswith(LEGACY_HEAD):
        return "legacy"
    return "other"
""",
        "what_is",
        "wrong",
        ["git-lfs"],
        [],
    ),
    # --- the false reject ----------------------------------------------------------------
    (
        "nb12_capstone_load_safely_3",
        "capstone_load_safely",
        """
def load_model_card(path):
    before = torch.serialization.get_safe_globals()
    torch.serialization.add_safe_globals([RunInfo])
    try:
        return torch.load(path, weights_only=True)
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(before)
""",
        "load_model_card",
        "correct",
        [],
        [],
    ),
    # --- misleading hints ----------------------------------------------------------------
    (
        "nb01_buffers_in_state_dict_7",
        "buffers_in_state_dict",
        """
def buffer_keys(model):
    return {k for k, v in model.state_dict().items() if not v.requires_grad}
""",
        "buffer_keys",
        "wrong",
        ["every key", "requires_grad"],
        ["the end of a key"],
    ),
    (
        "nb03_fits_9",
        "fits",
        """
def fits(state_dict, model):
    return dict(state_dict)
""",
        "fits",
        "wrong",
        ["every entry"],
        ["happens to match"],
    ),
    (
        "nb07_load_into_wrapped_10",
        "load_into_wrapped",
        """
def load_into_wrapped(wrapped, state_dict):
    return wrapped
""",
        "load_into_wrapped",
        "wrong",
        ["never called load_state_dict"],
        ["strict=false"],
    ),
    (
        "nb09_read_one_tensor_8",
        "read_one_tensor",
        """
from safetensors import safe_open
def read_one(path, key):
    with safe_open(path, framework="pt") as f:
        return f.get_tensor(list(f.keys())[0])
""",
        "read_one",
        "wrong",
        ["whatever key"],
        ["contains it"],
    ),
    (
        "nb09_read_one_tensor_10",
        "read_one_tensor",
        """
import safetensors.torch
def read_one(path, key):
    with open(path, "rb") as f:
        return safetensors.torch.load(f.read())[key]
""",
        "read_one",
        "wrong",
        ["safetensors.torch.load"],
        ["load_file reads"],
    ),
    (
        "nb10_predict_no_trace_9",
        "predict_no_trace",
        """
def predict(model, images):
    model.eval()
    model.requires_grad_(False)
    return model(images).argmax(1)
""",
        "predict",
        "wrong",
        ["requires_grad_(false)"],
        ["recording a graph"],
    ),
    (
        "nb11_dcp_to_weights_7",
        "dcp_to_weights",
        """
from pathlib import Path
def dcp_to_weights(dcp_dir, out_path):
    tmp = Path(out_path).with_suffix(".tmp")
    dcp_to_torch_save(dcp_dir, tmp)
    full = torch.load(tmp, weights_only=True)
    tmp.unlink()
    torch.save({"model": full["model"]}, out_path)
""",
        "dcp_to_weights",
        "wrong",
        ["one level"],
        ["whole checkpoint"],
    ),
    (
        "nb11_dcp_to_weights_10",
        "dcp_to_weights",
        """
def dcp_to_weights(dcp_dir, out_path):
    torch.save(torch.load(job.reference, weights_only=True)["model"], out_path)
""",
        "dcp_to_weights",
        "wrong",
        ["another model", "dcp_dir"],
        ["batchnorm"],
    ),
    (
        "nb11_saved_shapes_10",
        "saved_shapes",
        """
def saved_shapes(dcp_dir):
    return {k: tuple(v.shape) for k, v in Net().state_dict().items()}
""",
        "saved_shapes",
        "wrong",
        ["dcp_dir"],
        ["starting with 'model.'"],
    ),
    (
        "nb15_resume_scaled_8",
        "resume_scaled",
        """
def resume_scaled(checkpoint, optimizer, scheduler, factor):
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    optimizer.defaults["lr"] *= factor
""",
        "resume_scaled",
        "wrong",
        ["optimizer.defaults", "param_groups"],
        ["scale after loading both"],
    ),
    (
        "nb16_merge_lora_5",
        "merge_lora",
        """
def merge_lora(base_state_dict, adapter_dir):
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    r, alpha = config["r"], config["lora_alpha"]
    s = alpha // math.isqrt(r) if config.get("use_rslora") else alpha // r
    adapter = load_file(adapter_dir / "adapter_model.safetensors")
    merged = dict(base_state_dict)
    for key, A in adapter.items():
        if key.endswith(".lora_A.weight"):
            module = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
            B = adapter[key.replace("lora_A", "lora_B")]
            merged[module + ".weight"] = base_state_dict[module + ".weight"] + s * (B @ A)
    return merged
""",
        "merge_lora",
        "wrong",
        ["integer division", "//"],
        ["was not added"],
    ),
]


def _notebook_namespace(tmp_path: Path) -> dict:
    """What the learner notebooks have defined by the time of their exercises."""
    import json

    import torch.distributed.checkpoint as dcp
    from safetensors.torch import load_file
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    from labs_utils.capstone import RunInfo
    from labs_utils.models import Net

    reference = tmp_path / "reference.pth"
    torch.save({"model": Net().state_dict()}, reference)
    return {
        "__name__": "__main__",
        "torch": torch,
        "nn": torch.nn,
        "json": json,
        "math": math,
        "dcp": dcp,
        "dcp_to_torch_save": dcp_to_torch_save,
        "load_file": load_file,
        "RunInfo": RunInfo,
        "Net": Net,
        "scaler": torch.amp.GradScaler("cpu"),  # notebook 05's section 5 leaves one
        "job": types.SimpleNamespace(reference=reference),
    }


@pytest.mark.parametrize(
    "case, name, source, defines, status, must, must_not", CASES, ids=[c[0] for c in CASES]
)
def test_simulated_learner_case(tmp_path, case, name, source, defines, status, must, must_not):
    namespace = _notebook_namespace(tmp_path)
    exec(compile(source, f"<{case}>", "exec"), namespace)
    result = getattr(check, name)(namespace[defines])
    assert result.status == status, repr(result)
    text = result.message.lower()
    for fragment in must:
        assert fragment.lower() in text, repr(result)
    for fragment in must_not:
        assert fragment.lower() not in text, repr(result)


def test_the_table_covers_every_non_ok_case_of_the_review():
    kinds = {"correct": 0, "wrong": 0}
    for c in CASES:
        kinds[c[4]] += 1
    assert len(CASES) == 20 and kinds == {"correct": 1, "wrong": 19}
