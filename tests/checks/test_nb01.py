"""Checks of notebooks/01_state_dict_basics.ipynb: the notebook's solutions and other right answers
pass; the learner simulation's false accepts, and answers that only work on the notebook's own
model, are rejected with a hint that names the mistake; the check looks at effects (the file is
really read, the model given is left alone), not only at the return value."""

import copy
import os

import pytest
import torch
from torch import load, save

from labs_utils.checks import check, nb01
from labs_utils.models import SimpleModel, SmallCNN

# --- Exercise 1: buffer_keys(model) ------------------------------------------------------------


def buffer_keys(model):  # the notebook's solution
    return set(model.state_dict()) - {name for name, _ in model.named_parameters()}


@pytest.mark.parametrize(
    "answer",
    [
        buffer_keys,
        lambda m: m.state_dict().keys() - dict(m.named_parameters()).keys(),
        lambda m: frozenset(n for n, _ in m.named_buffers() if n in m.state_dict()),
        lambda m: {k for k in m.state_dict() if k not in dict(m.named_parameters())},
    ],
)
def test_buffer_keys_right_answers(answer):
    assert check.buffers_in_state_dict(answer), check.buffers_in_state_dict(answer)


@pytest.mark.parametrize(
    "answer,hint",
    [
        # accepted by the old value check ("not ending in .weight/.bias"): right on SmallCNN only
        (
            lambda m: {k for k in m.state_dict() if not k.endswith((".weight", ".bias"))},
            "parameter",
        ),
        (lambda m: {n for n, _ in m.named_buffers()}, "non-persistent"),
        (
            lambda m: {k for k in m.state_dict() if "running" in k or "num_batches" in k},
            "not only BatchNorm",
        ),
        (
            lambda m: {k for k in SmallCNN().state_dict() if "running" in k or "num_batches" in k},
            "model you are given",
        ),
        (lambda m: set(m.buffers()), "tensors"),
        (lambda m: {n: b for n, b in m.named_buffers()}, "set"),
        (
            lambda m: {k for k in m.state_dict() if k.endswith(("running_mean", "running_var"))},
            "num_batches_tracked",
        ),
    ],
)
def test_buffer_keys_wrong_answers(answer, hint):
    result = check.buffers_in_state_dict(answer)
    assert result.status == "wrong" and hint in result.message, repr(result)


def test_buffer_keys_cases_hold_what_they_claim():
    """The check's models break the usual shortcuts: a buffer whose key ends in .weight, a parameter
    not called weight/bias, a non-persistent buffer in a submodule, BatchNorm without buffers."""
    gated = nb01.Gated()
    keys = set(gated.state_dict())
    assert "loss_fn.weight" in keys and "loss_fn.weight" in dict(gated.named_buffers())
    assert "gain" in dict(gated.named_parameters())
    assert "proj.cache" in dict(gated.named_buffers()) and "proj.cache" not in keys
    no_stats = torch.nn.BatchNorm1d(3, track_running_stats=False)
    assert nb01._expected_buffers(no_stats) == set() and no_stats.running_mean is None


def test_a_forgotten_return_is_named():
    def forgot(model):
        set(model.state_dict()) - {name for name, _ in model.named_parameters()}

    result = check.buffers_in_state_dict(forgot)
    assert result.status == "wrong" and "return" in result.message


# --- Exercise 2: save_and_reload(model, path) --------------------------------------------------


def save_and_reload(model, path):  # the notebook's solution
    torch.save(model.state_dict(), path)
    fresh = type(model)()
    fresh.load_state_dict(torch.load(path))
    return fresh


def test_save_and_reload_solution():
    assert check.save_and_reload(save_and_reload)


def test_save_and_reload_right_answers_unlike_the_solution():
    def with_options(
        model, path
    ):  # from the simulation: __class__, map_location device, weights_only, eval
        torch.save(model.state_dict(), path)
        fresh = model.__class__()
        fresh.load_state_dict(torch.load(path, map_location=torch.device("cpu"), weights_only=True))
        return fresh.eval()

    def file_objects(model, path):  # open() once to write, once to read, before torch.load runs
        with open(path, "wb") as f:
            torch.save(model.state_dict(), f)
        fresh = type(model)()
        with open(path, "rb") as f:
            fresh.load_state_dict(torch.load(f))
        return fresh

    def string_path_and_assign(model, path):
        torch.save(model.state_dict(), os.fspath(path))
        fresh = type(model)()
        fresh.load_state_dict(torch.load(os.fspath(path), mmap=True), assign=True)
        return fresh

    for answer in (with_options, file_objects, string_path_and_assign):
        assert check.save_and_reload(answer), (
            answer.__name__,
            check.save_and_reload(answer),
        )


def test_save_and_reload_rejects_the_simulations_false_accepts():
    def reads_but_loads_memory(model, path):
        torch.save(model.state_dict(), path)
        fresh = type(model)()
        state = torch.load(path)  # noqa: F841  (read, then not used)
        fresh.load_state_dict(model.state_dict())
        return fresh

    def hard_coded_simple_model(model, path):
        torch.save(model.state_dict(), path)
        fresh = SimpleModel()
        fresh.load_state_dict(torch.load(path))
        return fresh

    result = check.save_and_reload(reads_but_loads_memory)
    assert result.status == "wrong" and "did not come from the file" in result.message
    result = check.save_and_reload(hard_coded_simple_model)
    assert result.status == "wrong" and "same class" in result.message


def _snapshot_then_load_snapshot(model, path):
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save(snapshot, path)
    torch.load(path)
    fresh = type(model)()
    fresh.load_state_dict(snapshot)
    return fresh


def _shared_state_dict(model, path):
    state = model.state_dict()
    torch.save(state, path)
    fresh = type(model)()
    fresh.load_state_dict(torch.load(path))
    fresh.load_state_dict(state)  # overwrites what came from the file
    return fresh


def _to_double(model, path):
    torch.save(model.state_dict(), path)
    fresh = type(model)().double()
    fresh.load_state_dict(torch.load(path))
    return fresh


def _trains_the_model(model, path):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1)
    return save_and_reload(model, path)


@pytest.mark.parametrize(
    "answer,hint",
    [
        (
            _snapshot_then_load_snapshot,
            "did not come from the file",
        ),  # the file is never the source
        (
            _shared_state_dict,
            "did not come from the file",
        ),  # overwrites what came from the file
        (_trains_the_model, "changed the model"),  # changes the model it was given
        (
            _to_double,
            "dtype",
        ),  # values from the file, but the model is no longer the class's own
    ],
)
def test_save_and_reload_other_wrong_answers(answer, hint):
    result = check.save_and_reload(answer)
    assert result.status == "wrong" and hint in result.message, repr(result)


def test_save_and_reload_hint_for_a_whole_model_loaded_back():
    def whole(model, path):
        torch.save(model, path)
        return torch.load(path, weights_only=False)

    result = check.save_and_reload(whole)
    assert result.status == "wrong" and "whole model" in result.message


def test_save_and_reload_leaves_torch_save_and_load_and_the_learners_model_alone():
    real, real_save = torch.load, torch.save
    model = SimpleModel()
    before = copy.deepcopy(model.state_dict())
    check.save_and_reload(save_and_reload)
    assert torch.load is real and torch.serialization.load is real
    assert torch.save is real_save and torch.serialization.save is real_save
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_save_and_reload_models_hold_moved_buffers():
    models = nb01._models()
    assert [type(m).__name__ for m in models] == ["SimpleModel", "SmallCNN", "Net"]
    cnn = models[1]
    assert int(cnn.features[1].num_batches_tracked) == 1
    planted = nb01._other_values(cnn.state_dict())
    assert all(not torch.equal(planted[k], v) for k, v in cnn.state_dict().items())


def test_save_and_reload_hint_for_the_keys_report():
    result = check.save_and_reload(
        lambda m, p: (
            torch.save(m.state_dict(), p),
            type(m)().load_state_dict(torch.load(p)),
        )[1]
    )
    assert result.status == "wrong" and "_IncompatibleKeys" in result.message


def _by_name(model, path):  # a notebook's `from torch import load, save`: still watched
    save(model.state_dict(), path)
    fresh = type(model)()
    fresh.load_state_dict(load(path))
    return fresh


def test_save_and_reload_sees_torch_save_imported_by_name():
    assert check.save_and_reload(_by_name), check.save_and_reload(_by_name)


def test_save_and_reload_accepts_the_files_bytes_read_into_memory_first():
    import io

    def via_bytes(model, path):
        torch.save(model.state_dict(), path)
        with open(path, "rb") as f:
            data = io.BytesIO(f.read())
        fresh = type(model)()
        fresh.load_state_dict(torch.load(data))
        return fresh

    def bytes_of_memory(model, path):  # a buffer that is not the file's bytes proves nothing
        torch.save(model.state_dict(), path)
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        buf.seek(0)
        fresh = type(model)()
        fresh.load_state_dict(torch.load(buf))
        return fresh

    assert check.save_and_reload(via_bytes), check.save_and_reload(via_bytes)
    result = check.save_and_reload(bytes_of_memory)
    assert result.status == "wrong" and "from the file" in result.message, repr(result)
