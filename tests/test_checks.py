"""The self-check framework, and every registered check: placeholders, wrong answers, hints."""
import pytest

from labs_utils.checks import REGISTRY, CheckResult, Wrong, call_answer, check, exercise
from labs_utils.checks import _load_all

_load_all()
EXERCISES = sorted(REGISTRY)


def _placeholder_fn(*args):
    pass


@pytest.mark.parametrize("name", EXERCISES)
@pytest.mark.parametrize("placeholder", [..., None, _placeholder_fn])
def test_placeholder_is_not_attempted_and_never_raises(name, placeholder):
    result = REGISTRY[name].fn(placeholder)
    if placeholder is _placeholder_fn and result.status == "wrong":
        # a check whose answer is a value, not a function, may call a function wrong
        assert "function" in result.message or "got" in result.message
        return
    assert result.status == "not attempted", repr(result)
    assert repr(result).startswith("Not attempted yet")


@pytest.mark.parametrize("name", EXERCISES)
def test_every_check_declares_wrong_answers(name):
    assert len(REGISTRY[name].wrong) >= 1, f"{name} declares no wrong answers to test its hints"


WRONG = [(name, i) for name in EXERCISES for i in range(len(REGISTRY[name].wrong))]


@pytest.mark.parametrize("name,i", WRONG)
def test_wrong_answer_gets_its_specific_hint(name, i):
    answer, hint = REGISTRY[name].wrong[i]
    result = REGISTRY[name].fn(answer)
    assert result.status == "wrong", repr(result)
    assert hint.lower() in result.message.lower(), repr(result)
    text = repr(result)
    assert text.startswith("Not yet: ") and f"notebooks/{REGISTRY[name].notebook}.ipynb" in text


@pytest.mark.parametrize("name", EXERCISES)
def test_declared_right_answers_pass(name):
    for answer in REGISTRY[name].right:
        assert REGISTRY[name].fn(answer), name


def test_unknown_check_lists_known_ones():
    with pytest.raises(AttributeError, match="known checks"):
        check.no_such_check
    assert "buffers_in_state_dict" in dir(check)


def test_framework_results():
    @exercise("_demo_square", notebook="00_demo", wrong=[(lambda x: x + x, "square")])
    def demo(fn):
        if call_answer(fn, 3) != 9:
            raise Wrong("square the number: x * x")
        return "good"

    try:
        assert repr(demo(lambda x: x * x)) == "Correct! good"
        assert bool(demo(lambda x: x * x)) is True
        r = demo(lambda x: x + x)
        assert isinstance(r, CheckResult) and not r and "square" in r.message
        assert demo(lambda x: 1 / 0).status == "wrong"
        assert "ZeroDivisionError" in demo(lambda x: 1 / 0).message

        def not_impl(x):
            raise NotImplementedError

        assert demo(not_impl).status == "not attempted"
        assert demo(42).status == "wrong" and "expected a function" in demo(42).message
        with pytest.raises(ValueError, match="two checks"):
            exercise("_demo_square", notebook="00_demo")(lambda a: None)
    finally:
        REGISTRY.pop("_demo_square", None)


@pytest.mark.parametrize("name", EXERCISES)
def test_checks_leave_the_learners_random_generators_alone(name):
    import random

    import numpy as np
    import torch

    torch.manual_seed(7)
    random.seed(7)
    np.random.seed(7)
    before = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    answer, _ = REGISTRY[name].wrong[0]
    REGISTRY[name].fn(answer)
    assert torch.equal(torch.get_rng_state(), before[0])
    assert random.getstate() == before[1]
    assert (np.random.get_state()[1] == before[2]).all()
