"""Checks of notebooks/09_safetensors.ipynb: the notebook's answers pass; a copy of a tied tensor is
not "storing it once"; reading every tensor inside safe_open is noticed, under any imported name."""

from __future__ import annotations

from safetensors import safe_open
from safetensors.torch import save_file, save_model

from labs_utils.checks import REGISTRY, check, nb09

check.save_with_epoch  # noqa: B018  (loads the module)
NAMES = [n for n, ex in REGISTRY.items() if ex.notebook == "09_safetensors"]


def save_with_epoch(model, path, epoch):  # the notebook's solution
    save_model(model, path, metadata={"epoch": str(epoch)})
    return path


def read_one(path, key):  # the notebook's solution
    with safe_open(path, framework="pt", device="cpu") as f:
        return f.get_tensor(key)


def test_names():
    assert sorted(NAMES) == ["read_one_tensor", "save_with_epoch"]


def test_notebook_answers_pass():
    assert check.save_with_epoch(save_with_epoch)
    assert check.read_one_tensor(read_one)


def test_the_check_models_are_tied_and_save_model_stores_one_copy(tmp_path):
    for cls, tie, _ in nb09._MODELS:
        model = cls()
        assert nb09._tied(model, tie)
        save_model(model, tmp_path / "m.safetensors")
        with safe_open(tmp_path / "m.safetensors", framework="pt") as f:
            assert len([n for n in tie if n in f.keys()]) == 1


def test_clone_hint_of_the_old_exercise_is_refused():
    """{k: v.clone()} gets past save_file but stores the tied tensor twice (review finding D)."""

    def clone_then_save(model, path, epoch):
        save_file(
            {k: v.clone() for k, v in model.state_dict().items()},
            path,
            metadata={"epoch": str(epoch)},
        )
        return path

    result = check.save_with_epoch(clone_then_save)
    assert result.status == "wrong" and "twice" in result.message


def test_a_forgotten_return_says_so():
    def no_return(model, path, epoch):
        save_model(model, path, metadata={"epoch": str(epoch)})

    result = check.save_with_epoch(no_return)
    assert result.status == "wrong" and "return path" in result.message
    assert not repr(result).startswith("Not attempted")


def test_reading_every_tensor_is_noticed_under_an_imported_name():
    """The simulation's false accept, with safe_open imported by name (as the notebook does)."""

    def every_tensor(path, key):
        with safe_open(path, framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}[key]

    def get_tensors_then_pick(path, key):
        with safe_open(path, framework="pt") as f:
            return f.get_tensors()[key]

    for answer in (every_tensor, get_tensors_then_pick):
        result = check.read_one_tensor(answer)
        assert result.status == "wrong" and "read 5 tensors" in result.message, answer.__name__


def test_the_counting_wrapper_is_gone_after_the_check():
    import safetensors
    import safetensors.torch as st

    real = safetensors.safe_open
    check.read_one_tensor(read_one)
    assert safetensors.safe_open is real and st.safe_open is real and globals()["safe_open"] is real
    assert st.load_file.__name__ == "load_file"


def test_a_slice_of_the_tensor_counts_as_one_read():
    def sliced(path, key):
        with safe_open(path, framework="pt") as f:
            return f.get_slice(key)[:]

    assert check.read_one_tensor(sliced)
