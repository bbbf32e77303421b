"""Checks of notebooks/06_devices_and_map_location.ipynb: right answers, every wrong answer's hint, placeholders."""
import pytest
import torch

from labs_utils.checks import check, _load_all

_load_all()


def _placeholder(*args):
    pass


def storage_locations(path):
    seen = set()

    def record(storage, location):
        seen.add(location)
        return storage

    torch.load(path, map_location=record, weights_only=True)
    return seen


@pytest.mark.parametrize("answer", [
    {"cuda:0": "cpu", "cuda:1": "cpu"},
    {"cuda:1": "cpu", "cuda:0": "cpu", "cuda:2": "cpu"},
])
def test_map_two_gpus_to_cpu_right(answer):
    result = check.map_two_gpus_to_cpu(answer)
    assert result and repr(result).startswith("Correct!")


def test_storage_locations_right():
    assert check.storage_locations(storage_locations)


def test_placeholder_function_is_not_attempted():
    assert check.storage_locations(_placeholder).status == "not attempted"
    # a function where a dict is asked for is a wrong answer with a hint, not a crash
    assert "dict" in check.map_two_gpus_to_cpu(_placeholder).message


def test_learner_code_that_crashes_gets_a_hint():
    def broken(path):
        raise KeyError("oops")

    result = check.storage_locations(broken)
    assert result.status == "wrong" and "KeyError" in result.message
