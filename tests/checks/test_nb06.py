"""Checks of notebooks/06_devices_and_map_location.ipynb: right answers, and what makes the checks
hard to fool (files where a byte search disagrees with the real storage tags, a callable map_location
required, torch's raw errors explained). tests/checks/test_framework.py feeds every declared wrong answer."""

import re
import zipfile

import pytest
import torch
from torch import (
    load,  # a learner may import it by name; the check must still see the call
)

from labs_utils.checks import check, load_all, nb06

load_all()


def storage_locations(path):
    seen = set()

    def record(storage, location):
        seen.add(location)
        return storage

    torch.load(path, map_location=record, weights_only=True)
    return seen


def storage_locations_by_imported_name(path):
    seen = set()
    load(
        path,
        map_location=lambda storage, location: seen.add(location) or storage,
        weights_only=True,
    )
    return seen


def _byte_search(path):
    with zipfile.ZipFile(path) as z:
        pkl = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    return {t.decode() for t in re.findall(rb"(cpu|cuda:\d+)", pkl)}


@pytest.mark.parametrize(
    "answer",
    [
        {"cuda:0": "cpu", "cuda:1": "cpu"},
        {"cuda:1": "cpu", "cuda:0": "cpu", "cuda:2": "cpu"},
    ],
)
def test_map_two_gpus_to_cpu_right(answer):
    result = check.map_two_gpus_to_cpu(answer)
    assert result and repr(result).startswith("Correct!")


@pytest.mark.parametrize("fn", [storage_locations, storage_locations_by_imported_name])
def test_storage_locations_right(fn):
    assert check.storage_locations(fn)


def test_the_checks_files_are_what_they_claim(tmp_path):
    """Each file's storages carry exactly the tags the check expects (read with a callable), and
    on at least one file a byte search of data.pkl gives another answer: the trap that catches it."""
    cases = nb06._cases(tmp_path)
    assert len(cases) >= 5
    # a file with several tags
    assert any(len(expected) > 1 for _, _, expected in cases)
    disagree = 0
    for what, path, expected in cases:
        assert storage_locations(path) == expected, what
        disagree += _byte_search(path) != expected
    assert disagree >= 1


def test_the_check_puts_torch_load_back():
    real = torch.serialization.load
    check.storage_locations(storage_locations)
    check.storage_locations(_byte_search)
    assert torch.load is real and torch.serialization.load is real and load is real


def test_a_byte_search_is_refused_even_where_it_gets_every_file_right(tmp_path, monkeypatch):
    """With only the files a byte search reads correctly, the check still asks for the callable."""
    cases = [c for c in nb06._cases(tmp_path) if _byte_search(c[1]) == c[2]]
    monkeypatch.setattr(nb06, "_cases", lambda folder: cases)
    result = check.storage_locations(_byte_search)
    assert result.status == "wrong" and "callable map_location" in result.message


def test_placeholder_function_is_not_attempted():
    def _placeholder(path):
        pass

    assert check.storage_locations(_placeholder).status == "not attempted"
    # a function where a dict is asked for is a wrong answer with a hint, not a crash
    assert "dict" in check.map_two_gpus_to_cpu(_placeholder).message


def test_learner_code_that_crashes_gets_a_hint():
    def broken(path):
        raise KeyError("oops")

    result = check.storage_locations(broken)
    assert result.status == "wrong" and "KeyError" in result.message


def test_raw_torch_errors_come_with_their_meaning():
    def returns_cuda(path):
        seen = set()
        torch.load(
            path,
            map_location=lambda s, loc: seen.add(loc) or s.cuda(),
            weights_only=True,
        )
        return seen

    result = check.storage_locations(returns_cuda)
    if torch.cuda.is_available():  # the suite hides GPUs; on a GPU machine the answer is merely odd
        return
    assert result.status == "wrong" and "moved the storages to a GPU" in result.message, repr(
        result
    )
