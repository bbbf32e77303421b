"""Every call that reads a weights file, audited (notebooks/LOADERS.md).

For each row of the loader table, the call the workbook recommends is fed a hostile file: a real
file of that format with a harmless payload inside (a pickle whose ``__reduce__`` writes a marker
file, or, for TorchScript, a program that creates one). URL loaders get the same file from a local
``http.server`` on 127.0.0.1. A row whose verdict is "refuses code" or "no code in the format" must
leave no marker; a row marked "trusted files only" must show the payload running (so the verdict is
honest), and every notebook cell that uses that call must say "trust..." nearby.

A scanner reads the code cells of every notebook and maps each loader call to its row: a call that
fits no row fails ("add a row to notebooks/LOADERS.md").
"""

import contextlib
import dataclasses
import functools
import hashlib
import http.server
import io
import json
import logging
import os
import pickle
import re
import runpy
import subprocess
import sys
import threading
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.heavy  # started early by make test (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "notebooks" / "LOADERS.md"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

VERDICTS = ("refuses code", "no code in the format", "trusted files only")


# --- the table ----------------------------------------------------------------------------------


def read_table() -> dict[str, dict[str, str]]:
    """The rows of the loader table in LOADERS.md (the table whose first column is ``id``),
    by id; each row is a dict keyed by the table's column names (lower case)."""
    rows: dict[str, dict[str, str]] = {}
    header: list[str] | None = None
    for line in TABLE.read_text().splitlines():
        if not line.startswith("|"):
            if rows:
                break  # the end of the loader table
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = [c.lower() for c in cells]
            continue
        if header[0] != "id" or set("".join(cells)) <= set("-: "):
            continue
        m = re.fullmatch(r"`([a-z0-9-]+)`", cells[0])
        assert m, f"LOADERS.md: the first column must be a row id in backticks: {line}"
        assert len(cells) == len(header), f"LOADERS.md: {len(cells)} cells in {line}"
        rows[m.group(1)] = dict(zip(header, cells, strict=True))
    return rows


def verdict(row: dict[str, str]) -> str:
    text = row["verdict"].strip("* ").lower()
    for v in VERDICTS:
        if text.startswith(v):
            return v
    raise AssertionError(f"verdict must start with one of {VERDICTS}: {row['verdict']!r}")


ROWS = read_table()


def test_every_row_has_a_verdict_and_a_probe():
    assert ROWS, "no rows found in notebooks/LOADERS.md"
    for rid, row in ROWS.items():
        verdict(row)
        assert rid in PROBES, (
            f"row {rid!r} of LOADERS.md has no probe in tests/notebooks/test_loaders.py"
        )
    assert set(PROBES) <= set(ROWS), f"probes without a row: {sorted(set(PROBES) - set(ROWS))}"


# --- hostile files ------------------------------------------------------------------------------


class Payload:
    """Unpickling this calls exec(...), which writes a marker file: the stand-in for malware."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('payload ran')",))


class Box:
    """One test's scratch folder, its marker, and the hostile files built in it."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.marker = folder / "marker.txt"

    def ran(self) -> bool:
        """Whether the payload ran since the last call (the marker is removed)."""
        if self.marker.exists():
            self.marker.unlink()
            return True
        return False

    def weights(self) -> dict[str, torch.Tensor]:
        return torch.nn.Linear(2, 2).state_dict()

    def pth(self, name: str = "evil.pth", **extra) -> Path:
        """A torch.save checkpoint: real weights plus a payload entry."""
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": self.weights(), "note": Payload(self.marker), **extra}, path)
        return path

    def plain_pickle(self) -> Path:
        path = self.folder / "evil.pkl"
        path.write_bytes(pickle.dumps({"w": [1.0, 2.0], "note": Payload(self.marker)}))
        return path

    def pt2(self) -> Path:
        """A torch.export archive whose example inputs (a torch.save file) carry the payload."""
        good = self.folder / "good.pt2"
        exported = torch.export.export(torch.nn.Linear(2, 2), (torch.ones(1, 2),))
        torch.export.save(exported, good)
        inner = io.BytesIO()
        torch.save((Payload(self.marker),), inner)
        path = self.folder / "evil.pt2"
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w") as dst:
            for entry in src.infolist():
                is_inputs = entry.filename.endswith("data/sample_inputs/model.pt")
                dst.writestr(entry.filename, inner.getvalue() if is_inputs else src.read(entry))
        return path

    def torchscript(self) -> Path:
        """A TorchScript archive whose __setstate__ (run by the loader) creates the marker."""
        path = self.folder / "evil_scripted.pt"
        scripted = quietly(lambda: torch.jit.script(_ScriptedWithSetstate(str(self.marker))))
        quietly(lambda: torch.jit.save(scripted, path))
        self.ran()  # scripting and saving must not have run it
        return path

    def dcp(self) -> tuple[Path, dict[str, torch.Tensor]]:
        """A DCP folder whose .metadata (a plain pickle) carries the payload."""
        import torch.distributed.checkpoint as dcp

        folder = self.folder / "dcp"
        quietly(lambda: dcp.save({"w": torch.ones(2)}, checkpoint_id=folder, no_dist=True))
        with open(folder / ".metadata", "rb") as f:
            metadata = pickle.load(f)  # trusted: written two lines above
        metadata.planner_data = Payload(self.marker)
        with open(folder / ".metadata", "wb") as f:
            pickle.dump(metadata, f)
        return folder, {"w": torch.zeros(2)}

    def served(self, path: Path, name: str | None = None) -> Path:
        """Copy ``path`` into the folder the local web server serves."""
        www = self.folder / "www"
        www.mkdir(exist_ok=True)
        target = www / (name or path.name)
        target.write_bytes(path.read_bytes())
        return target


class _ScriptedWithSetstate(torch.nn.Module):
    marker: torch.jit.Final[str]

    def __init__(self, marker: str):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(2))
        self.marker = marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, bool]:
        return (self.weight, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, bool]) -> None:
        # torch.from_file(..., shared=True) creates the file: code that touches the disk
        self.weight = state[0] + torch.from_file(self.marker, True, 2)
        self.training = state[1]


@pytest.fixture
def box(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Box:
    for var in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return Box(tmp_path)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no request lines on stderr
        pass


@pytest.fixture
def serve(box: Box, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Path], str]]:
    """Serve ``box.folder/www`` on 127.0.0.1 (a free port) for one test; gives file -> URL."""
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    www = box.folder / "www"
    www.mkdir(exist_ok=True)
    handler = functools.partial(_Quiet, directory=str(www))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    port = server.server_address[1]
    try:
        yield lambda path: f"http://127.0.0.1:{port}/{path.name}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def hub_cache(box: Box, monkeypatch: pytest.MonkeyPatch) -> Path:
    """torch.hub's cache (Lightning downloads there) inside the test's folder."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(box.folder / "hub"))
    return box.folder / "hub"


def refused(call: Callable[[], object]) -> BaseException:
    """Run ``call``; it must raise. Returns the exception."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            call()
        except Exception as e:  # noqa: BLE001 - any refusal counts; the tests look at it
            return e
    raise AssertionError("the call loaded the hostile file instead of refusing it")


def quietly(call: Callable[[], object]) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return call()


# --- probes: one per row; each returns whether the payload ran with the row's call ---------------


def probe_torch_load(box: Box, **_) -> bool:
    e = refused(lambda: torch.load(box.pth(), map_location="cpu", weights_only=True))
    assert isinstance(e, pickle.UnpicklingError) and "exec" in str(e)
    ran = box.ran()
    # the other hostile formats that hold a pickle or a program: refused as well
    for path in (box.torchscript(), box.plain_pickle()):
        e = refused(lambda p=path: torch.load(p, map_location="cpu", weights_only=True))
        assert path.suffix == ".pkl" or "with TorchScript archives" in str(e), e
        ran |= box.ran()
    return ran


def probe_torch_load_default(box: Box, monkeypatch: pytest.MonkeyPatch, **_) -> bool:
    path = box.pth()
    e = refused(lambda: torch.load(path))
    assert isinstance(e, pickle.UnpicklingError)
    ran = box.ran()
    # the default is the environment's: this variable turns it off for calls that do not say
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    quietly(lambda: torch.load(path))
    assert box.ran(), "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 no longer switches the default off"
    return ran


def probe_torch_load_unsafe(box: Box, **_) -> bool:
    loaded = torch.load(box.pth(), weights_only=False)
    assert sorted(loaded) == ["model", "note"]
    return box.ran()


def probe_pickle_load(box: Box, **_) -> bool:
    with open(box.plain_pickle(), "rb") as f:
        pickle.load(f)
    return box.ran()


def _hashed(box: Box) -> Path:
    """The payload file, named as check_hash=True wants it: name-<sha256 prefix>.pth."""
    evil = box.pth()
    digest = hashlib.sha256(evil.read_bytes()).hexdigest()[:8]
    return box.served(evil, f"weights-{digest}.pth")


def probe_hub_url(box: Box, serve, **_) -> bool:
    url = serve(_hashed(box))
    e = refused(
        lambda: torch.hub.load_state_dict_from_url(
            url,
            model_dir=str(box.folder / "cache"),
            weights_only=True,
            check_hash=True,
            progress=False,
        )
    )
    assert isinstance(e, pickle.UnpicklingError), e
    assert (box.folder / "cache" / Path(url).name).exists(), "the file was not downloaded"
    return box.ran()


def probe_hub_url_default(box: Box, serve, **_) -> bool:
    url = serve(_hashed(box))
    loaded = torch.hub.load_state_dict_from_url(
        url, model_dir=str(box.folder / "cache"), check_hash=True, progress=False
    )
    assert sorted(loaded) == ["model", "note"]
    return box.ran()


def probe_export_load(box: Box, **_) -> bool:
    path = box.pt2()
    logging.disable(logging.WARNING)  # it logs the refused safe load with a broken format
    try:
        program = quietly(lambda: torch.export.load(path))
    finally:
        logging.disable(logging.NOTSET)
    assert isinstance(program, torch.export.ExportedProgram)
    return box.ran()


def probe_jit_load(box: Box, **_) -> bool:
    path = box.torchscript()
    module = quietly(lambda: torch.jit.load(path))  # DeprecationWarning in 2.13
    assert torch.equal(module(torch.ones(2)), torch.ones(2))
    ran = box.ran()
    # torch.load(weights_only=False) hands a TorchScript archive to torch.jit.load
    quietly(lambda: torch.load(path, weights_only=False))
    assert box.ran(), "torch.load(weights_only=False) no longer runs TorchScript"
    return ran


def probe_dcp_load(box: Box, **_) -> bool:
    import torch.distributed.checkpoint as dcp

    folder, state = box.dcp()
    quietly(lambda: dcp.load(state, checkpoint_id=folder, no_dist=True))
    assert torch.equal(state["w"], torch.ones(2))
    ran = box.ran()
    # an entry that is not a tensor is read with torch.load(weights_only=False)
    rigged = box.folder / "dcp_rigged"
    saved = {"w": torch.ones(2), "step": Payload(box.marker)}
    quietly(lambda: dcp.save(saved, checkpoint_id=rigged, no_dist=True))
    assert not box.ran(), "saving ran the payload"
    state = {"w": torch.zeros(2), "step": 0}
    quietly(lambda: dcp.load(state, checkpoint_id=rigged, no_dist=True))
    assert box.ran(), "dcp.load no longer unpickles non-tensor entries"
    return ran


def probe_dcp_read_metadata(box: Box, **_) -> bool:
    import torch.distributed.checkpoint as dcp

    folder, _ = box.dcp()
    metadata = dcp.FileSystemReader(str(folder)).read_metadata()
    assert "w" in metadata.state_dict_metadata
    return box.ran()


def probe_dcp_workers(box: Box, **_) -> bool:
    import torch.distributed.checkpoint as dcp

    from labs_utils.models import SimpleModel
    from labs_utils.workers import dcp_workers

    model = SimpleModel()
    folder = box.folder / "dcp_model"
    state = {"model": model.state_dict(), "step": 3}
    quietly(lambda: dcp.save(state, checkpoint_id=folder, no_dist=True))
    with open(folder / ".metadata", "rb") as f:
        metadata = pickle.load(f)  # trusted: written just above
    metadata.planner_data = Payload(box.marker)
    with open(folder / ".metadata", "wb") as f:
        pickle.dump(metadata, f)
    quietly(lambda: dcp_workers.load_single_process(SimpleModel(), None, folder))
    return box.ran()


def _safetensors_files(box: Box) -> tuple[Path, Path]:
    """A pickle payload named .safetensors, and a real safetensors file whose header
    metadata and tensor bytes hold the payload's pickle as data."""
    from safetensors.torch import save_file

    renamed = box.folder / "renamed.safetensors"
    renamed.write_bytes(box.plain_pickle().read_bytes())
    blob = pickle.dumps(Payload(box.marker))
    carrier = box.folder / "carrier.safetensors"
    data = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
    save_file({"blob": data}, carrier, metadata={"note": blob.hex()})
    return renamed, carrier


def probe_safetensors_load_file(box: Box, **_) -> bool:
    from safetensors.torch import load_file

    renamed, carrier = _safetensors_files(box)
    refused(lambda: load_file(renamed))
    loaded = load_file(carrier)
    assert bytes(loaded["blob"].numpy()) == pickle.dumps(Payload(box.marker))
    return box.ran()


def probe_safetensors_safe_open(box: Box, **_) -> bool:
    from safetensors import safe_open

    renamed, carrier = _safetensors_files(box)
    refused(lambda: safe_open(renamed, framework="pt"))
    with safe_open(carrier, framework="pt", device="cpu") as f:
        note = f.metadata()["note"]
        blob = f.get_tensor("blob")
    assert bytes.fromhex(note) == bytes(blob.numpy())
    return box.ran()


def probe_safetensors_load(box: Box, **_) -> bool:
    from safetensors.torch import load

    renamed, carrier = _safetensors_files(box)
    refused(lambda: load(renamed.read_bytes()))
    assert set(load(carrier.read_bytes())) == {"blob"}
    return box.ran()


def probe_safetensors_load_model(box: Box, **_) -> bool:
    from safetensors.torch import load_model, save_file

    renamed, _ = _safetensors_files(box)
    refused(lambda: load_model(torch.nn.Linear(2, 2), renamed))
    good = box.folder / "linear.safetensors"
    save_file(box.weights(), good)
    missing, unexpected = load_model(torch.nn.Linear(2, 2), good)
    assert not missing and not unexpected
    return box.ran()


def probe_hub_mixin(box: Box, monkeypatch: pytest.MonkeyPatch, **_) -> bool:
    import huggingface_hub.constants
    from huggingface_hub import PyTorchModelHubMixin

    class TinyHub(torch.nn.Module, PyTorchModelHubMixin):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(2, 2)

    # a local folder: only model.safetensors is read (here one whose bytes are a pickle)
    folder = box.folder / "hub_model"
    TinyHub().save_pretrained(folder)
    _, carrier = _safetensors_files(box)
    (folder / "model.safetensors").write_bytes(carrier.read_bytes())
    quietly(lambda: TinyHub.from_pretrained(folder))  # strict=False: loads no key
    ran = box.ran()
    # a repo id (from the Hub cache, offline) that ships pytorch_model.bin, no safetensors:
    # from_pretrained falls back to the pickle format
    repo = box.folder / "hub_cache" / "models--someone--tiny"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    (snapshot / "config.json").write_text("{}")
    torch.save(
        {**TinyHub().state_dict(), "note": Payload(box.marker)},
        snapshot / "pytorch_model.bin",
    )
    # offline, as a learner's closed network would be: the cache, without waiting on the Hub
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    e = refused(lambda: TinyHub.from_pretrained("someone/tiny", cache_dir=box.folder / "hub_cache"))
    assert isinstance(e, pickle.UnpicklingError), e
    return ran | box.ran()


def probe_peft(box: Box, **_) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from peft import LoraConfig, PeftModel, get_peft_model

    def base() -> torch.nn.Module:
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))

    folder = box.folder / "adapter"
    adapted = get_peft_model(base(), LoraConfig(r=2, target_modules=["0"]))
    adapted.save_pretrained(folder, safe_serialization=False)  # adapter_model.bin
    state = torch.load(folder / "adapter_model.bin", weights_only=True)
    torch.save({**state, "note": Payload(box.marker)}, folder / "adapter_model.bin")
    e = refused(lambda: PeftModel.from_pretrained(base(), folder))
    assert isinstance(e, pickle.UnpicklingError), e
    return box.ran()


def _lightning():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import lightning as L

    class TinyLit(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(2, 2)

    return L, TinyLit


def _ckpt(box: Box) -> Path:
    """A Lightning .ckpt (a torch.save dict) with the payload in one more entry."""
    L, TinyLit = _lightning()
    return box.pth(
        "evil.ckpt",
        state_dict=TinyLit().state_dict(),
        hyper_parameters={},
        **{"pytorch-lightning_version": L.__version__},
    )


def probe_lightning_path(box: Box, **_) -> bool:
    _, TinyLit = _lightning()
    path = _ckpt(box)
    e = refused(lambda: TinyLit.load_from_checkpoint(path, weights_only=True))
    assert isinstance(e, pickle.UnpicklingError), e
    ran = box.ran()
    # a local path without weights_only: PyTorch's default, which refuses too
    refused(lambda: TinyLit.load_from_checkpoint(path))
    return ran | box.ran()


def probe_lightning_url(box: Box, serve, hub_cache, **_) -> bool:
    _, TinyLit = _lightning()
    url = serve(box.served(_ckpt(box)))
    e = refused(lambda: TinyLit.load_from_checkpoint(url, weights_only=True))
    assert isinstance(e, pickle.UnpicklingError), e
    return box.ran()


def probe_lightning_default(box: Box, serve, hub_cache, **_) -> bool:
    _, TinyLit = _lightning()
    url = serve(box.served(_ckpt(box)))
    model = quietly(lambda: TinyLit.load_from_checkpoint(url))
    assert isinstance(model, TinyLit)
    return box.ran()


def probe_lightning_fit(box: Box, **_) -> bool:
    """Resuming with Trainer.fit(ckpt_path=...) reads the file before any training step."""
    L, _ = _lightning()

    class Trainable(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(2, 2)

        def training_step(self, batch, _):
            return self.fc(batch[0]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(2, 2)))
    path = _ckpt(box)
    trainer = L.Trainer(
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=box.folder,
    )
    e = refused(lambda: trainer.fit(Trainable(), data, ckpt_path=path, weights_only=True))
    assert isinstance(e, pickle.UnpicklingError), e
    return box.ran()


def _onnx_files(box: Box) -> tuple[Path, Path]:
    """A pickle payload named .onnx, and a real ONNX model whose external weights point
    outside its folder (at a file it has no business reading)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    renamed = box.folder / "renamed.onnx"
    renamed.write_bytes(box.plain_pickle().read_bytes())
    secret = box.folder / "secret.bin"
    secret.write_bytes(np.arange(4, dtype=np.float32).tobytes())
    weight = numpy_helper.from_array(np.zeros(4, dtype=np.float32), "W")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in [
        ("location", "../secret.bin"),
        ("offset", "0"),
        ("length", "16"),
    ]:
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "W"], ["y"])], "g", [x], [y], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    escaping = box.folder / "model" / "escaping.onnx"
    escaping.parent.mkdir()
    onnx.save(model, escaping)
    return renamed, escaping


def probe_onnxruntime(box: Box, **_) -> bool:
    import onnxruntime

    renamed, escaping = _onnx_files(box)
    for path in (renamed, escaping):
        refused(lambda p=path: onnxruntime.InferenceSession(p, providers=["CPUExecutionProvider"]))
    e = refused(lambda: onnxruntime.InferenceSession(escaping, providers=["CPUExecutionProvider"]))
    assert "escapes model directory" in str(e), e
    return box.ran()


def probe_onnx_load(box: Box, **_) -> bool:
    import onnx

    renamed, escaping = _onnx_files(box)
    refused(lambda: onnx.load(renamed))
    e = refused(lambda: onnx.load(escaping))
    assert "outside the directory" in str(e), e
    return box.ran()


def probe_load_checkpoint(box: Box, **_) -> bool:
    from labs_utils.toolkit import CheckpointError, load_checkpoint

    e = refused(lambda: load_checkpoint(box.pth()))
    assert isinstance(e, CheckpointError) and "exec" in str(e), e
    return box.ran()


def _manager(box: Box):
    from labs_utils.toolkit import CheckpointManager

    manager = CheckpointManager(box.folder / "run")
    box.pth("run/last.pth", epoch=1)
    box.pth("run/best.pth", epoch=1)
    return manager


def probe_load_last(box: Box, **_) -> bool:
    from labs_utils.toolkit import CheckpointError

    manager = _manager(box)
    e = refused(manager.load_last)
    assert isinstance(e, CheckpointError), e
    return box.ran()


def probe_load_best(box: Box, **_) -> bool:
    from labs_utils.toolkit import CheckpointError

    manager = _manager(box)
    e = refused(manager.load_best)
    assert isinstance(e, CheckpointError), e
    return box.ran()


def probe_toolkit_unsafe(box: Box, **_) -> bool:
    from labs_utils.toolkit import load_checkpoint

    assert sorted(load_checkpoint(box.pth(), weights_only=False)) == ["model", "note"]
    ran = box.ran()
    manager = _manager(box)
    box.ran()
    quietly(lambda: manager.load_last(weights_only=False))
    quietly(lambda: manager.load_best(weights_only=False))
    return ran and box.ran()


def probe_toolkit_paths(box: Box, **_) -> bool:
    from labs_utils.toolkit import diff, load_matching, summarize

    path = box.pth()
    for call in (
        lambda: summarize(path),
        lambda: diff(torch.nn.Linear(2, 2), path),
        lambda: load_matching(torch.nn.Linear(2, 2), path),
    ):
        e = refused(call)
        assert "builtins.exec" in str(e), e
    return box.ran()


def _every_hostile_file(box: Box) -> list[Path]:
    folder, _ = box.dcp()
    return [
        box.pth(),
        box.plain_pickle(),
        box.torchscript(),
        box.pt2(),
        folder / ".metadata",
        _ckpt(box),
    ]


def probe_inspect(box: Box, **_) -> bool:
    from labs_utils.toolkit import inspect_checkpoint

    report = inspect_checkpoint(box.pth())
    assert not report.safe_to_load and "builtins.exec" in report.refused_globals
    ran = box.ran()
    for path in _every_hostile_file(box):
        try:
            quietly(lambda p=path: inspect_checkpoint(p))
        except Exception:  # noqa: BLE001, S110 - a refusal is fine; only the marker matters
            pass
        ran |= box.ran()
    return ran


def _cli(*argv: str) -> int:
    """``python -m labs_utils ...``, run in this process (runpy, as -m does)."""
    old = sys.argv
    sys.argv = ["labs_utils", *argv]
    try:
        with pytest.raises(SystemExit) as exit_:
            quietly(lambda: runpy.run_module("labs_utils", run_name="__main__", alter_sys=True))
    finally:
        sys.argv = old
    return exit_.value.code


def probe_cli_inspect(box: Box, capsys: pytest.CaptureFixture, **_) -> bool:
    assert _cli("inspect", str(box.pth())) == 3  # "safe loading would refuse it"
    assert "builtins.exec" in capsys.readouterr().out
    ran = box.ran()
    for path in _every_hostile_file(box):
        _cli("inspect", str(path))
        ran |= box.ran()
    return ran


def probe_cli_convert(box: Box, capsys: pytest.CaptureFixture, **_) -> bool:
    from labs_utils.toolkit import convert_to_safetensors

    out = box.folder / "out.safetensors"
    assert _cli("convert", str(box.pth()), str(out)) == 1
    assert "weights_only=True" in capsys.readouterr().err
    refused(lambda: convert_to_safetensors(box.pth(), out))
    assert not out.exists()
    return box.ran()


def _bin_folder(box: Box, name: str, state: dict) -> Path:
    """A folder holding only ``name`` (a pickle checkpoint: ``state`` plus the payload)."""
    folder = box.folder / name.split(".")[0]
    folder.mkdir()
    torch.save({**state, "note": Payload(box.marker)}, folder / name)
    return folder


def probe_hf_load_torch_model(box: Box, **_) -> bool:
    from huggingface_hub import load_torch_model

    model = torch.nn.Linear(2, 2)
    folder = _bin_folder(box, "pytorch_model.bin", model.state_dict())
    # the default (safe=True) reads safetensors only: a pickle checkpoint is not opened
    for path in (folder, folder / "pytorch_model.bin"):
        e = refused(lambda p=path: load_torch_model(model, p))
        assert not isinstance(e, pickle.UnpicklingError), e
    ran = box.ran()
    # safe=False falls back to the pickle, with weights_only=True
    e = refused(lambda: load_torch_model(model, folder, safe=False))
    assert isinstance(e, pickle.UnpicklingError), e
    return ran | box.ran()


def probe_accelerate_dispatch(box: Box, **_) -> bool:
    from accelerate import init_empty_weights, load_checkpoint_and_dispatch

    folder = _bin_folder(box, "pytorch_model.bin", torch.nn.Linear(2, 2).state_dict())
    with init_empty_weights():
        empty = torch.nn.Linear(2, 2)
    for path in (folder, folder / "pytorch_model.bin"):
        e = refused(
            lambda p=path: load_checkpoint_and_dispatch(empty, str(p), device_map={"": "cpu"})
        )
        assert isinstance(e, pickle.UnpicklingError), e
    return box.ran()


def _transformers():
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")  # torchao, imported by transformers, reports kernels
        from transformers import BertConfig, BertForSequenceClassification
        from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    config = BertConfig(
        vocab_size=10,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=8,
        max_position_embeddings=8,
    )
    return BertForSequenceClassification, config


def probe_transformers(box: Box, **_) -> bool:
    Bert, config = _transformers()
    folder = box.folder / "bert"
    with contextlib.redirect_stderr(io.StringIO()):  # a progress bar
        Bert(config).save_pretrained(folder)
    # a repository that ships pytorch_model.bin instead of model.safetensors
    state = load_file_pt(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save({**state, "note": Payload(box.marker)}, folder / "pytorch_model.bin")
    e = refused(lambda: Bert.from_pretrained(folder))
    assert isinstance(e, pickle.UnpicklingError), e
    ran = box.ran()
    # use_safetensors=True does not open a pickle at all
    e = refused(lambda: Bert.from_pretrained(folder, use_safetensors=True))
    assert not isinstance(e, pickle.UnpicklingError), e
    return ran | box.ran()


def load_file_pt(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(path)


def probe_gguf_reader(box: Box, **_) -> bool:
    import gguf
    import numpy as np

    renamed = box.folder / "renamed.gguf"
    renamed.write_bytes(box.plain_pickle().read_bytes())
    refused(lambda: gguf.GGUFReader(renamed))
    blob = pickle.dumps(Payload(box.marker))
    carrier = box.folder / "carrier.gguf"
    writer = gguf.GGUFWriter(carrier, arch="tiny")
    writer.add_string("tiny.note", blob.hex())
    writer.add_tensor("blob", np.frombuffer(blob, dtype=np.int8).copy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    reader = gguf.GGUFReader(carrier)
    assert bytes(np.array(reader.tensors[0].data)) == blob
    return box.ran()


def probe_accelerate_load_state(box: Box, **_) -> bool:
    """An Accelerator's folder whose optimizer and RNG files carry the payload."""
    from accelerate import Accelerator

    def prepared():
        accelerator = Accelerator(cpu=True)
        model = torch.nn.Linear(2, 2)
        return accelerator, *accelerator.prepare(model, torch.optim.SGD(model.parameters(), lr=0.1))

    accelerator, _, _ = prepared()
    folder = box.folder / "accelerate_state"
    quietly(lambda: accelerator.save_state(folder))
    hostile = box.pth("evil_state.bin")
    for name in ("optimizer.bin", "random_states_0.pkl"):
        (folder / name).write_bytes(hostile.read_bytes())
    accelerator, _, _ = prepared()
    refused(lambda: accelerator.load_state(folder))
    return box.ran()


def probe_hub_load(box: Box, **_) -> bool:
    """A checkout whose hubconf.py creates the marker when torch.hub imports it."""
    checkout = box.folder / "checkout"
    checkout.mkdir()
    (checkout / "hubconf.py").write_text(
        "import pathlib\n\n"
        "dependencies = []\n"
        f"pathlib.Path({str(box.marker)!r}).touch()\n\n\n"
        "def tiny():\n"
        "    return None\n"
    )
    torch.hub.load(str(checkout), "tiny", source="local")
    return box.ran()


def probe_deepspeed_zero_to_fp32(box: Box, **_) -> bool:
    """A ZeRO folder whose model-states file carries the payload, merged by DeepSpeed's own
    zero_to_fp32 in a child Python with .venv/deepspeed (installed by make setup) on its path."""
    deepspeed = Path(sys.prefix) / "deepspeed"
    assert (deepspeed / "deepspeed").is_dir(), f"no DeepSpeed in {deepspeed}: run `make setup`"
    box.pth("zero/global_step1/mp_rank_00_model_states.pt")
    (box.folder / "zero" / "latest").write_text("global_step1")
    # Only the marker counts (the tool then fails on the folder): the child ends with os._exit,
    # without the teardown of torch and DeepSpeed (0.4 s of CPU).
    code = (
        "import os\n"
        "try:\n"
        "    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint\n"
        f"    get_fp32_state_dict_from_zero_checkpoint({str(box.folder / 'zero')!r})\n"
        "finally:\n"
        "    os._exit(0)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(deepspeed), "DS_ACCELERATOR": "cpu"}
    subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=300)
    return box.ran()


PROBES: dict[str, Callable[..., bool]] = {
    "torch-load": probe_torch_load,
    "torch-load-default": probe_torch_load_default,
    "torch-load-unsafe": probe_torch_load_unsafe,
    "pickle-load": probe_pickle_load,
    "hub-url": probe_hub_url,
    "hub-url-default": probe_hub_url_default,
    "export-load": probe_export_load,
    "jit-load": probe_jit_load,
    "dcp-load": probe_dcp_load,
    "dcp-read-metadata": probe_dcp_read_metadata,
    "dcp-workers": probe_dcp_workers,
    "safetensors-load-file": probe_safetensors_load_file,
    "safetensors-safe-open": probe_safetensors_safe_open,
    "safetensors-load": probe_safetensors_load,
    "safetensors-load-model": probe_safetensors_load_model,
    "hub-mixin": probe_hub_mixin,
    "peft": probe_peft,
    "lightning-path": probe_lightning_path,
    "lightning-url": probe_lightning_url,
    "lightning-default": probe_lightning_default,
    "lightning-fit": probe_lightning_fit,
    "onnxruntime": probe_onnxruntime,
    "onnx-load": probe_onnx_load,
    "load-checkpoint": probe_load_checkpoint,
    "load-last": probe_load_last,
    "load-best": probe_load_best,
    "toolkit-unsafe": probe_toolkit_unsafe,
    "toolkit-paths": probe_toolkit_paths,
    "inspect": probe_inspect,
    "cli-inspect": probe_cli_inspect,
    "cli-convert": probe_cli_convert,
    "hf-load-torch-model": probe_hf_load_torch_model,
    "accelerate-dispatch": probe_accelerate_dispatch,
    "transformers": probe_transformers,
    "gguf-reader": probe_gguf_reader,
    "accelerate-load-state": probe_accelerate_load_state,
    "hub-load": probe_hub_load,
    "deepspeed-zero-to-fp32": probe_deepspeed_zero_to_fp32,
}


@pytest.mark.parametrize("rid", sorted(ROWS))
def test_the_row_s_verdict_holds(rid, box, request, monkeypatch, capsys):
    """The payload does not run with the recommended call; a "trusted files only" row shows
    it running (with the call as the row names it), so the verdict is honest."""
    fixtures = {"box": box, "monkeypatch": monkeypatch, "capsys": capsys}
    if rid in {"hub-url", "hub-url-default", "lightning-url", "lightning-default"}:
        fixtures["serve"] = request.getfixturevalue("serve")
        fixtures["hub_cache"] = request.getfixturevalue("hub_cache")
    ran = PROBES[rid](**fixtures)
    if verdict(ROWS[rid]) == "trusted files only":
        assert ran, f"{rid}: the table says 'trusted files only', but the payload did not run"
    else:
        assert not ran, f"{rid}: THE PAYLOAD RAN with the call the table recommends"


# --- the scanner ----------------------------------------------------------------------------------

# Calls that read no weights file although their names look like loaders.
NOT_WEIGHTS = {
    "load_state_dict",  # a dict already in memory
    "json.load",
    "json.loads",
    "ModelCard.load",  # a README.md
    "importlib.reload",
}

LOADER_NAME = re.compile(
    r"(?:(?<=\)\.)|(?<![\w.]))((?:[A-Za-z_]\w*\.)*(?:load|loads|load_\w+|\w+_load|from_pretrained|"
    r"safe_open|read_metadata|\w*Session|\w*Reader|inspect_checkpoint|convert_to_safetensors|"
    r"summarize|diff|\w*zero_checkpoint\w*|fit\w*))\s*\("
)
IMPORT = re.compile(r"from\s+([\w.]+)\s+import\s+(\([\w\s,]+\)|[\w ,]+)")
CLI = re.compile(r"""labs_utils["']?,?\s+["']?(inspect|convert)\b""")


def _args(text: str, start: int) -> str:
    """The text between the parenthesis at ``start`` and its partner (or the rest)."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start + 1 : i]
    return text[start + 1 :]


def _weights_only(args: str) -> str:
    m = re.search(r"weights_only\s*=\s*(\w+)", args)
    return m.group(1) if m else "not given"


@dataclasses.dataclass
class Context:
    mixins: set[str] = dataclasses.field(default_factory=set)
    transformers: set[str] = dataclasses.field(default_factory=set)


def classify(name: str, args: str, context: Context | None = None) -> str | None:
    """The row of LOADERS.md a call belongs to; None for a call that reads no weights file;
    "?" for a loader the table has no row for. ``context``: what the notebook defines and
    imports (to tell whose ``from_pretrained`` a call is)."""
    context = context or Context()
    last = name.split(".")[-1]
    wo = _weights_only(args)
    if name in NOT_WEIGHTS or last in NOT_WEIGHTS:
        return None
    if name == "torch.load":
        return {
            "True": "torch-load",
            "False": "torch-load-unsafe",
            "not given": "torch-load-default",
        }.get(wo, "?")
    if name in ("pickle.load", "pickle.loads"):
        return "pickle-load"
    if "zero_checkpoint" in last:  # DeepSpeed's zero_to_fp32 functions
        return "deepspeed-zero-to-fp32"
    if last == "load_state":  # an accelerate.Accelerator's folder
        return "accelerate-load-state"
    if name.endswith("hub.load"):
        return "hub-load"
    if last == "load_state_dict_from_url":
        return "hub-url" if wo == "True" else "hub-url-default"
    if name.endswith("export.load"):
        return "export-load"
    if name.endswith("jit.load"):
        return "jit-load"
    if name == "dcp.load":
        return "dcp-load"
    if last == "read_metadata":
        return "dcp-read-metadata"
    if last == "load_single_process":
        return "dcp-workers"
    if last == "load_file":
        return "safetensors-load-file"
    if last == "safe_open":
        return "safetensors-safe-open"
    if name in ("safetensors.torch.load", "st.load"):
        return "safetensors-load"
    if last == "load_model":
        return "safetensors-load-model"
    if last == "from_pretrained":
        owner = name.rsplit(".", 1)[0]
        if owner.split(".")[-1] == "PeftModel":
            return "peft"
        if owner in context.mixins:  # a class that mixes in PyTorchModelHubMixin
            return "hub-mixin"
        if owner in context.transformers or owner.startswith("transformers."):
            return "transformers"
        if context.transformers and not context.mixins and "." not in owner:
            return "transformers"  # a variable (``cls``) in a notebook that uses only those
        return "?"
    if last == "load_torch_model":
        return "hf-load-torch-model" if "safe=False" not in args else "?"
    if last in ("load_checkpoint_and_dispatch", "load_checkpoint_in_model"):
        return "accelerate-dispatch"
    if last == "GGUFReader":
        return "gguf-reader"
    if last == "FileSystemReader":
        return None  # reads nothing until read_metadata (its own row)
    if last == "load_from_checkpoint":
        if wo != "True":
            return "lightning-default"
        return "lightning-url" if "http" in args else "lightning-path"
    if last.startswith("fit"):  # Lightning resumes a .ckpt given as ckpt_path
        if "ckpt_path" not in args:
            return None
        return "lightning-fit" if wo == "True" else "lightning-default"
    if last == "InferenceSession":
        return "onnxruntime"
    if name == "onnx.load":
        return "onnx-load"
    if last in ("load_checkpoint", "load_last", "load_best"):
        if wo == "False":
            return "toolkit-unsafe"
        return {"load_checkpoint": "load-checkpoint", "load_last": "load-last"}.get(
            last, "load-best"
        )
    if last in ("summarize", "diff", "load_matching") and (
        "." not in name or name.startswith("labs_utils.")
    ):
        return "toolkit-paths"
    if last == "inspect_checkpoint":
        return "inspect"
    if last == "convert_to_safetensors":
        return "cli-convert"
    if last in ("summarize", "diff"):
        return None  # another library's (np.diff, ...)
    return "?"


def _context(sources: list[str]) -> Context:
    """Classes defined with PyTorchModelHubMixin among their bases (or one of those), and the
    names imported from transformers."""
    context = Context()
    classes = [
        (m.group(1), set(re.findall(r"\w+", m.group(2))))
        for source in sources
        for m in re.finditer(r"class\s+(\w+)\s*\(([^)]*)\)", source)
    ]
    known = {"PyTorchModelHubMixin"}
    for _ in classes:  # a class of a class of the mixin ...
        known |= {name for name, bases in classes if bases & known}
    context.mixins = known - {"PyTorchModelHubMixin"}
    for source in sources:
        for module, names in IMPORT.findall(source):
            if module.split(".")[0] == "transformers":
                context.transformers |= set(re.findall(r"\w+", names))
    return context


def _in_string(text: str, at: int) -> bool:
    """Whether position ``at`` of a cell's code lies inside a string literal."""
    import io
    import tokenize

    row = text.count("\n", 0, at) + 1
    col = at - (text.rfind("\n", 0, at) + 1)
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.STRING and tok.start <= (row, col) < tok.end:
                return True
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return False  # a cell with IPython syntax: scan it all, as before
    return False


def scan() -> Iterator[tuple[str, int, str, str]]:
    """(notebook, cell index, call, row id or "?") for every loader call in a code cell."""
    for nb in NOTEBOOKS:
        cells = json.loads(nb.read_text())["cells"]
        defined: set[str] = set()
        imported: dict[str, str] = {}  # bare name -> module.name
        context = _context(["".join(c["source"]) for c in cells if c["cell_type"] == "code"])
        for cell in cells:
            if cell["cell_type"] == "code":
                source = "".join(cell["source"])
                defined |= set(re.findall(r"def\s+(\w+)\s*\(", source))
                for module, names in IMPORT.findall(source):
                    for bare in re.findall(r"\w+", names):
                        imported[bare] = f"{module}.{bare}"
        for index, cell in enumerate(cells):
            if cell["cell_type"] != "code":
                continue
            text = "".join(cell["source"])
            for m in LOADER_NAME.finditer(text):
                name = m.group(1)
                resumes = "ckpt_path=" in _args(text, m.end() - 1)
                if _in_string(text, m.start()):
                    continue  # text a cell prints, not a call
                if (name in defined and not resumes) or name.startswith(("check.", "self.")):
                    continue  # the notebook's own function: its body is scanned
                if text[max(0, m.start() - 4) : m.start()].endswith("def "):
                    continue
                if "." not in name:
                    if name not in imported and name in ("load", "loads"):
                        continue  # a local variable (``for how, load in calls.items()``)
                    name = imported.get(name, name)
                row = classify(name, _args(text, m.end() - 1), context)
                if row is not None:
                    yield nb.name, index, name, row
            for m in CLI.finditer(text):
                yield (
                    nb.name,
                    index,
                    f"python -m labs_utils {m.group(1)}",
                    f"cli-{m.group(1)}",
                )


SCANNED = list(scan())


def test_the_scanner_finds_the_workbook_s_loaders():
    found = {row for *_, row in SCANNED}
    # the calls the notebooks are known to show; a scanner that finds none of them is broken
    for row in (
        "torch-load",
        "torch-load-unsafe",
        "export-load",
        "jit-load",
        "dcp-load",
        "dcp-read-metadata",
        "safetensors-load-file",
        "hub-mixin",
        "peft",
        "onnxruntime",
        "load-checkpoint",
        "load-last",
        "inspect",
        "cli-inspect",
        "cli-convert",
    ):
        assert row in found, f"the scanner found no call for {row!r}"


def test_every_loader_call_in_the_notebooks_has_a_row():
    missing = sorted(
        f"{nb} cell {i}: {name}(...)" for nb, i, name, row in SCANNED if row not in ROWS
    )
    assert not missing, (
        "loader calls with no row in notebooks/LOADERS.md (add a row, and a probe here):\n"
        + "\n".join(missing)
    )


def _near(cells: list[dict], index: int) -> str:
    """The cell's own text and the markdown cells directly before and after it."""
    near = ["".join(cells[index]["source"])]
    for j in (index - 1, index + 1):
        if 0 <= j < len(cells) and cells[j]["cell_type"] == "markdown":
            near.append("".join(cells[j]["source"]))
    return "\n".join(near)


def test_trusted_only_calls_say_so_where_they_appear():
    trusted_rows = {rid for rid, row in ROWS.items() if verdict(row) == "trusted files only"}
    silent = set()
    for nb, index, name, row in SCANNED:
        if row not in trusted_rows:
            continue
        cells = json.loads((ROOT / "notebooks" / nb).read_text())["cells"]
        if not re.search(r"\btrust", _near(cells, index), re.IGNORECASE):
            silent.add(f"{nb} cell {index}: {name}(...) [{row}]")
    assert not silent, (
        "these cells use a 'trusted files only' call with no 'trust...' sentence in the cell "
        "or the markdown cell just before or after it:\n" + "\n".join(sorted(silent))
    )


def test_the_table_lists_the_notebooks_with_trusted_only_calls():
    trusted_rows = {rid for rid, row in ROWS.items() if verdict(row) == "trusted files only"}
    used = {nb[:2] for nb, _, _, row in SCANNED if row in trusted_rows}
    text = TABLE.read_text()
    section = text[text.index("## Where the") :]
    listed = set(re.findall(r"^- (\d\d):", section, re.MULTILINE))
    assert listed == used, (
        "notebooks/LOADERS.md, 'Where the \"trusted files only\" calls appear': "
        f"add {sorted(used - listed)}, remove {sorted(listed - used)}"
    )


@pytest.mark.parametrize(
    ("code", "row"),
    [
        ("torch.load(p)", "torch-load-default"),
        (
            "torch.load(p, map_location='cpu',\n weights_only=False)",
            "torch-load-unsafe",
        ),
        ("torch.hub.load_state_dict_from_url(u)", "hub-url-default"),
        ("torch.hub.load_state_dict_from_url(u, weights_only=True)", "hub-url"),
        (
            "Lit.load_from_checkpoint('https://x/y.ckpt', weights_only=True)",
            "lightning-url",
        ),
        ("Lit.load_from_checkpoint(p)", "lightning-default"),
        ("trainer.fit(m, d, ckpt_path=p, weights_only=True)", "lightning-fit"),
        ("fit_quietly(t, m, d, ckpt_path=p)", "lightning-default"),
        ("trainer.fit(m, d)", None),
        ("AutoModel.from_pretrained('gpt2')", "?"),
        ("HubCNN.from_pretrained(p)", "?"),  # no context: whose from_pretrained?
        ("huggingface_hub.load_torch_model(m, p, safe=False)", "?"),
        ("gguf.GGUFReader(p)", "gguf-reader"),
        ("np.load(p)", "?"),
        ("torch.hub.load('repo', 'model')", "hub-load"),
        ("get_fp32_state_dict_from_zero_checkpoint(d)", "deepspeed-zero-to-fp32"),
        ("model.load_state_dict(sd)", None),
    ],
)
def test_the_scanner_classifies_calls(code, row):
    m = LOADER_NAME.search(code)
    assert m, code
    assert classify(m.group(1), _args(code, m.end() - 1)) == row


def test_the_scanner_tells_whose_from_pretrained():
    notebook = [
        "from huggingface_hub import PyTorchModelHubMixin\n"
        "from peft import PeftModel\n"
        "from transformers import BertModel\n",
        "class HubCNN(nn.Module, PyTorchModelHubMixin):\n    pass\n"
        "class Renamed(HubCNN):\n    pass\n",
    ]
    context = _context(notebook)
    for code, row in [
        ("HubCNN.from_pretrained(p)", "hub-mixin"),
        ("Renamed.from_pretrained(p)", "hub-mixin"),
        ("PeftModel.from_pretrained(base, p)", "peft"),
        ("BertModel.from_pretrained(p)", "transformers"),
        ("cls.from_pretrained(p)", "?"),  # mixins and transformers both here: unknown
        ("AutoModel.from_pretrained(p)", "?"),
    ]:
        m = LOADER_NAME.search(code)
        assert classify(m.group(1), _args(code, m.end() - 1), context) == row, code
