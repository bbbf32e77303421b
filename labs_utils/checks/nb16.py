"""Checks for notebooks/16_ecosystem_formats.ipynb: ``.ckpt`` files from real Lightning runs (one
tampered), LoRA adapters in PEFT's format merged as PEFT's ``merge_and_unload`` does. Lightning is
imported inside the functions: importing it takes seconds."""

from __future__ import annotations

import functools
import io
import json
import logging
import math
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from . import Case, Wrong, behaves_like, call_answer, exercise, run_answer
from .calling import attempted
from .fixtures import named

NB = "16_ecosystem_formats"


@functools.lru_cache(maxsize=1)
def _lightning_cases() -> tuple[tuple[str, bytes, tuple[str, ...]], ...]:
    """Two LightningModules trained two steps with ModelCheckpoint: ``net`` beside ``net_ema`` (a
    name that starts like it) and a loss with a weight buffer; ``model`` (its own first layer is
    called ``model``: keys ``model.model.weight``) beside a ``teacher``. Returns (file name, its
    bytes, the attributes to ask for) for each."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from torch.utils.data import DataLoader, TensorDataset

    class Lit(L.LightningModule):
        def __init__(self, parts: dict, lr: float = 0.05):
            super().__init__()
            self.save_hyperparameters(ignore=["parts"])
            for name, part in parts.items():
                setattr(self, name, part)

        def training_step(self, batch, batch_idx):  # trains the first part
            return nn.functional.cross_entropy(next(self.children())(batch[0]), batch[1])

        def configure_optimizers(self):
            params = next(self.children()).parameters()
            return torch.optim.SGD(params, lr=self.hparams.lr, momentum=0.9)

    def mlp() -> nn.Module:
        return nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3))

    def inner() -> nn.Module:
        return named(model=nn.Linear(6, 10), norm=nn.BatchNorm1d(10), out=nn.Linear(10, 3))

    loss = nn.CrossEntropyLoss(weight=torch.tensor([1.0, 3.0, 0.5]))
    runs = [
        ("ema", ("net", "net_ema"), lambda: dict(net=mlp(), net_ema=mlp(), loss_fn=loss)),
        ("nested", ("model",), lambda: dict(model=inner(), teacher=nn.Linear(6, 3))),
    ]
    cases, options = [], dict(logger=False, enable_progress_bar=False, enable_model_summary=False)
    options |= dict(accelerator="cpu", devices=1)  # the same files on a machine with a GPU
    logger = logging.getLogger("lightning.pytorch")  # its info lines stay out of the cell
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
            warnings.simplefilter("ignore")  # Lightning's machine-dependent advice
            for kind, attributes, parts in runs:
                torch.manual_seed(16)
                lit = Lit(parts())
                data = TensorDataset(torch.randn(16, 6), torch.randint(0, 3, (16,)))
                saver = ModelCheckpoint(dirpath=tmp, filename=kind)
                trainer = L.Trainer(max_steps=2, callbacks=[saver], default_root_dir=tmp, **options)
                trainer.fit(lit, DataLoader(data, batch_size=8))  # the epoch ends at step 2
                cases.append(
                    (f"{kind}.ckpt", (Path(tmp) / f"{kind}.ckpt").read_bytes(), attributes)
                )
    finally:
        logger.setLevel(level)
    return tuple(cases)


def _tampered(ckpt_bytes: bytes, marker: Path, path: Path) -> None:
    """The checkpoint with code in its 'callbacks' entry: loading it runs that code (a marker)."""
    from ..capstone import MarkerPayload

    ckpt = torch.load(io.BytesIO(ckpt_bytes), weights_only=True)
    ckpt["callbacks"]["ModelCheckpoint"] = MarkerPayload(marker)
    torch.save(ckpt, path)


def _picking(pick: Any) -> Any:
    """``pick(state_dict, prefix)`` applied to the file's state_dict: the reference, a mistake."""
    load = lambda path: torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return lambda path, attribute: pick(load(path), attribute + ".")


# the reference: the entries under ``attribute.``, that prefix removed once
_weights_of = _picking(lambda sd, p: {k[len(p) :]: v for k, v in sd.items() if k.startswith(p)})
_WEIGHTS_MISTAKES = [
    (
        _picking(lambda sd, p: sd),
        "you returned the whole state_dict of the LightningModule; keep only the entries under the attribute's prefix (such as 'net.') and remove that prefix",
    ),
    (
        _picking(lambda sd, p: {k: v for k, v in sd.items() if k.startswith(p)}),
        "the keys still start with the attribute's prefix (such as 'net.'); remove the prefix from each key, once",
    ),
    (
        _picking(lambda sd, p: {k.replace(p, ""): v for k, v in sd.items() if k.startswith(p)}),
        "'model.model.weight' became 'weight': the prefix was removed more than once, but the submodule's own key is 'model.weight'. str.replace removes every occurrence, a while loop strips a run, and normalize_keys strips a run of prefixes unless you pass like=; remove the prefix once, at the start: key[len(prefix):]",
    ),
    (
        _picking(lambda sd, p: {k[len(p) :]: v for k, v in sd.items() if k.startswith(p[:-1])}),
        "the entries of another attribute that starts with the same letters came along ('net_ema.' with 'net'); test key.startswith(attribute + '.'), with the dot",
    ),
    (
        _picking(lambda sd, p: {k.removeprefix(p): v for k, v in sd.items()}),
        "the keys of the other attributes came along (each belongs to another attribute of the LightningModule, and a plain module's strict load refuses them): keep only the keys under the attribute's prefix",
    ),
]


@exercise("weights_from_ckpt", notebook=NB)
def weights_from_ckpt(fn) -> str:
    """``fn(path, attribute)`` returns the state_dict of the LightningModule's ``attribute``."""
    attempted(fn)  # before building checkpoints or adapters
    cases = _lightning_cases()
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        for name, data, attributes in cases:
            (Path(tmp) / name).write_bytes(data)
            for a in attributes:
                label = f"{name}, attribute {a!r}"
                runs.append(Case(label, lambda p=Path(tmp) / name, a=a: (p, a)))
        behaves_like(fn, _weights_of, runs, _WEIGHTS_MISTAKES)
        marker = Path(tmp) / "marker.txt"
        tampered = Path(tmp) / "from_a_stranger.ckpt"
        _tampered(cases[0][1], marker, tampered)
        try:
            out = run_answer(fn, tampered, "net")
            refused = False
        except Wrong:
            refused = True
        if marker.exists():
            raise Wrong(
                "given a tampered .ckpt, your function ran the code hidden in its 'callbacks' entry (it wrote a marker file while loading): load with torch.load(path, weights_only=True) and never retry with weights_only=False"
            )
        if not refused:
            raise Wrong(
                f"given a tampered .ckpt that safe loading refuses, your function returned {type(out).__name__} instead of raising: let the UnpicklingError through, so that the caller knows the file is not what it should be"
            )
    return "the weights of each attribute, keys as the submodule has them, loaded safely; the tampered file was refused."


def _mlp() -> nn.Module:
    relu = nn.ReLU()
    return named(
        fc1=nn.Linear(12, 20), r1=relu, fc2=nn.Linear(20, 20), r2=relu, head=nn.Linear(20, 3)
    )


def _stack() -> nn.Module:
    """Two blocks, each with a ``proj`` and an ``out_proj`` (a name that ends like it)."""
    block = lambda: named(norm=nn.LayerNorm(8), proj=nn.Linear(8, 16), out_proj=nn.Linear(16, 8))
    return named(blocks=nn.Sequential(block(), block()), head=nn.Linear(8, 3))


# name, model, target_modules, r, lora_alpha, use_rslora
_LORA_CASES = (
    ("fc1 and fc2, r=4, lora_alpha=16", _mlp, ["fc1", "fc2"], 4, 16, False),
    ("proj but not out_proj in blocks.0 and .1, r=8, lora_alpha=4", _stack, ["proj"], 8, 4, False),
    (
        "proj and out_proj, r=4, lora_alpha=8, use_rslora=True",
        _stack,
        ["proj", "out_proj"],
        4,
        8,
        True,
    ),
)


def _adapter(folder: Path, index: int) -> tuple[str, dict, dict, float]:
    """Write an adapter as PEFT's save_pretrained does (adapter_config.json and
    adapter_model.safetensors; tests/checks/test_nb16.py loads it with PEFT and compares with
    merge_and_unload); return (name, base state_dict, merged state_dict W + s * (B @ A), s)."""
    from safetensors.torch import save_file

    name, model_cls, targets, r, alpha, rslora = _LORA_CASES[index]
    torch.manual_seed(100 + index)
    base = {k: v.detach().clone() for k, v in model_cls().state_dict().items()}
    scale = alpha / math.sqrt(r) if rslora else alpha / r
    merged, tensors = dict(base), {}
    for key, w in base.items():
        module = key.removesuffix(".weight")
        if key.endswith(".weight") and module.rsplit(".", 1)[-1] in targets:
            a, b = torch.randn(r, w.shape[1]) * 0.3, torch.randn(w.shape[0], r) * 0.3
            tensors[f"base_model.model.{module}.lora_A.weight"] = a
            tensors[f"base_model.model.{module}.lora_B.weight"] = b
            merged[key] = w + (b @ a) * scale  # as PEFT's merge: weight += (B @ A) * scaling
    folder.mkdir()
    save_file(tensors, folder / "adapter_model.safetensors")
    config = {"peft_type": "LORA", "r": r, "lora_alpha": alpha, "target_modules": targets}
    config |= {"use_rslora": rslora, "lora_dropout": 0.0, "bias": "none", "task_type": None}
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return name, base, merged, scale


def _implied_scale(out: torch.Tensor, base: torch.Tensor, ref: torch.Tensor, scale: float) -> float:
    """The scale the answer used, from its change to the weight against PEFT's change."""
    theirs, true = (out - base).double(), (ref - base).double()
    return float((theirs * true).sum() / (true * true).sum()) * scale


def _scale_hint(used: float, r: int, alpha: float, rslora: bool, scale: float) -> str | None:
    def near(a: float, b: float) -> bool:
        return abs(a - b) <= 1e-3 * max(abs(b), 1e-6)

    whole = alpha // math.isqrt(r) if rslora else alpha // r
    if near(used, whole) and not near(whole, scale):
        return f"your scale is {whole}, what integer division gives ({alpha} // {'isqrt(r)' if rslora else r}): s = lora_alpha / r is a fraction here ({scale:g}); use /, not //"
    if near(used, 0.0):
        return "the weight did not change: the adapter's B @ A was not added to it"
    if near(used, 1.0) and not near(scale, 1.0):
        return (
            f"you added B @ A without the scale: multiply by s = lora_alpha / r ({alpha} / {r}"
            + (f", or lora_alpha / sqrt(r) = {scale:g} with use_rslora" if rslora else "")
            + ")"
        )
    if near(used, r / alpha):
        return f"the scale is upside down: s = lora_alpha / r = {alpha} / {r}, not r / lora_alpha"
    if rslora and near(used, alpha / r):
        return f"this adapter has use_rslora = true in adapter_config.json: its scale is lora_alpha / sqrt(r) = {scale:g}, not lora_alpha / r = {alpha / r:g}"
    if not rslora and near(used, alpha / math.sqrt(r)):
        return f"lora_alpha / sqrt(r) is for use_rslora = true only; here s = lora_alpha / r = {scale:g}"
    if near(used, alpha):
        return f"the scale is lora_alpha / r = {alpha} / {r}, not lora_alpha alone"
    return None


def _merge_hint(out: Any, base_sd: dict, ref: dict, case: int, scale: float) -> str | None:
    """What differs between the answer's merge and the reference, if anything."""
    _, _, _, r, alpha, rslora = _LORA_CASES[case]
    if not isinstance(out, Mapping):
        return f"return a state_dict (a dict of key -> tensor), got {type(out).__name__}"
    peft_keys = sorted(k for k in out if k.startswith("base_model.model.") or ".lora_" in k)
    if peft_keys:
        return f"your state_dict has the key {peft_keys[0]!r}; the base model's keys have no 'base_model.model.' and no lora_ entries: strip 'base_model.model.' and '.lora_A.weight' to get the module's name, and write its '.weight'"
    if set(out) != set(base_sd):
        return f"expected the base model's keys {sorted(base_sd)}, got {sorted(out)}"
    for k, base in base_sd.items():
        value = out[k]
        same_kind = isinstance(value, torch.Tensor) and value.dtype == base.dtype
        if not same_kind or value.shape != base.shape:
            return f"{k!r} should be a {base.dtype} tensor of shape {tuple(base.shape)}, got {getattr(value, 'dtype', type(value).__name__)} {tuple(getattr(value, 'shape', ()))}"
        if torch.equal(ref[k], base) and not torch.equal(value, base):
            return f"{k!r} changed, but the adapter has nothing for it; change only the weights of modules with lora_A and lora_B in the file"
        if torch.allclose(value, ref[k], rtol=1e-5, atol=1e-5):
            continue
        hint = _scale_hint(_implied_scale(value, base, ref[k], scale), r, alpha, rslora, scale)
        if hint:
            return f"{k!r}: {hint}"
        return f"{k!r} differs from PEFT's merge_and_unload by up to {(value - ref[k]).abs().max().item():.3g}: it should be W + s * (B @ A), with B (out x r) and A (r x in) of that module"
    return None


@exercise("merge_lora", notebook=NB)
def merge_lora(fn) -> str:
    """``fn(base_state_dict, adapter_dir)`` returns a new state_dict with the adapter merged."""
    attempted(fn)
    with tempfile.TemporaryDirectory() as tmp:
        for case in range(len(_LORA_CASES)):
            folder = Path(tmp) / f"adapter_{case}"
            name, base_sd, ref, scale = _adapter(folder, case)
            given = {k: v.clone() for k, v in base_sd.items()}
            given_ids = {k: id(v) for k, v in given.items()}
            try:
                out = call_answer(fn, given, folder)
                if set(given) != set(base_sd) or any(
                    id(given[k]) != given_ids[k] or not torch.equal(given[k], v)
                    for k, v in base_sd.items()
                ):
                    raise Wrong(
                        "your function changed the state_dict you were given (its entries or their values); build a new dict, e.g. merged = dict(base_state_dict), and assign new tensors with + instead of +="
                    )
                hint = _merge_hint(out, base_sd, ref, case, scale)
                if hint:
                    raise Wrong(hint)
            except Wrong as w:
                shapes = ("must match the size", "size mismatch", "cannot be multiplied")
                if any(s in str(w) for s in shapes):
                    w = Wrong(
                        f"{w}; the shapes: lora_B is (out x r) and lora_A is (r x in), so B @ A is (out x in), like the weight"
                    )
                raise Wrong(f"adapter on {name}: {w}") from None
    return "every adapter merged as PEFT's merge_and_unload does (within 1e-5), other entries unchanged, the given state_dict left alone."
