"""The self-check framework, and every registered check: placeholders, wrong answers, hints.
The wrong and right answers are test data in tests/checks/answers_nbNN.py."""

import importlib
from pathlib import Path

import pytest

from labs_utils.checks import (
    REGISTRY,
    Case,
    CheckResult,
    Wrong,
    behaves_like,
    call_answer,
    check,
    exercise,
    explained,
    load_all,
)

pytestmark = pytest.mark.heavy  # started early by make test (tests/conftest.py)

load_all()
EXERCISES = sorted(REGISTRY)
WRONG_OF: dict = {}
RIGHT_OF: dict = {}
for _path in sorted(Path(__file__).parent.glob("answers_nb*.py")):
    _answers = importlib.import_module(f"tests.checks.{_path.stem}")
    WRONG_OF.update(_answers.WRONG)
    RIGHT_OF.update(_answers.RIGHT)


def _placeholder_fn(*args):
    pass


@pytest.mark.parametrize("name", EXERCISES)
def test_every_check_declares_wrong_answers(name):
    assert len(WRONG_OF.get(name, [])) >= 1, f"{name} declares no wrong answers to test its hints"


def test_unknown_check_lists_known_ones():
    with pytest.raises(AttributeError, match="known checks"):
        _ = check.no_such_check
    assert "buffers_in_state_dict" in dir(check)


def test_framework_results():
    @exercise("_demo_square", notebook="00_demo")
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
        # a failing check shows the case it tried: what went in, what came out
        assert repr(demo(lambda x: x + x)).endswith("\n  tried: <lambda>(3) returned 6")
        assert "tried: <lambda>(3) raised ZeroDivisionError" in repr(demo(lambda x: 1 / 0))
        assert "tried" not in repr(demo(lambda x: x * x))
        with pytest.raises(ValueError, match="two checks"):
            exercise("_demo_square", notebook="00_demo")(lambda a: None)
    finally:
        REGISTRY.pop("_demo_square", None)


def test_behaves_like_shows_the_call_on_the_case_it_names():
    @exercise("_demo_halve", notebook="00_demo")
    def demo(fn):
        cases = [Case(f"x={x}", lambda x=x: (x,)) for x in (4, 3, 8)]
        with explained("ZeroDivisionError", "{error}: leave the odd numbers alone"):
            behaves_like(fn, lambda x: x // 2 if x % 2 == 0 else x, cases)
        return "good"

    def halve(x):
        if x == 4:
            return 1 // (x - 4)
        return x // 2 if x % 2 == 0 else x

    try:
        r = demo(lambda x: x // 2)  # wrong on the 2nd case only; the 3rd case ran last
        assert r.message == "for x=3 you returned 1; expected 3"
        assert r.tried == "<lambda>(3) returned 1"
        r = demo(halve)  # it raises on the first case only: its line is shown
        assert r.message.endswith("by zero: leave the odd numbers alone")
        assert r.tried == "halve(4) raised ZeroDivisionError" and "1 // (x - 4)" in r.where
        assert repr(demo(lambda x: x if x % 2 else x // 2)) == "Correct! good"
    finally:
        REGISTRY.pop("_demo_halve", None)


class _LearnerGlobal:  # stands for a class a learner allowed for the whole process
    pass


def _label(answer) -> str:
    return getattr(answer, "__name__", None) or repr(answer)[:40]


@pytest.mark.parametrize("name", EXERCISES)
def test_every_listed_answer_gets_its_verdict_and_the_learners_process_is_left_alone(
    name, tmp_path, monkeypatch, subtests
):
    """One check, every answer listed for it (a subtest each, so one failure does not hide the
    next): a placeholder (``...``, ``None``, a function that only passes) is "not attempted" and
    never raises; each wrong answer is wrong, with its own hint; each right answer passes. Random
    generators, grad mode, the learner's own safe globals, the default dtype and the current folder
    are as they were after every check, whatever answer it was given.

    One test per check, not one per answer: pytest's own cost per test (about 1.5 ms) came to
    about 1 s of CPU over some 600 answers, and each check's first wrong answer ran twice."""
    import os
    import random

    import numpy as np
    import torch

    check_ = REGISTRY[name].fn
    monkeypatch.chdir(tmp_path)
    torch.serialization.add_safe_globals([_LearnerGlobal])
    try:
        torch.manual_seed(7)
        random.seed(7)
        np.random.seed(7)
        before = (
            torch.get_rng_state(),
            random.getstate(),
            np.random.get_state()[1].copy(),
        )
        globals_before = set(torch.serialization.get_safe_globals())

        def left_alone():
            assert torch.is_grad_enabled()
            assert set(torch.serialization.get_safe_globals()) == globals_before
            assert os.getcwd() == str(tmp_path)
            assert torch.get_default_dtype() == torch.float32

        for placeholder in (..., None, _placeholder_fn):
            with subtests.test(msg=f"placeholder {_label(placeholder)}"):
                result = check_(placeholder)
                if placeholder is _placeholder_fn and result.status == "wrong":
                    # a check whose answer is a value, not a function, may call a function wrong
                    assert "function" in result.message or "got" in result.message
                else:
                    assert result.status == "not attempted", repr(result)
                    assert repr(result).startswith("Not attempted yet")
                left_alone()
        for i, (answer, hint) in enumerate(WRONG_OF.get(name, [])):
            with subtests.test(msg=f"wrong answer {i} ({_label(answer)})"):
                result = check_(answer)
                assert not result and result.status == "wrong", repr(result)
                assert hint.lower() in result.message.lower(), repr(result)
                text = repr(result)
                assert text.startswith("Not yet: ") and "notebooks/" not in text
                left_alone()
        for answer in RIGHT_OF.get(name, []):
            with subtests.test(msg=f"right answer {_label(answer)}"):
                result = check_(answer)
                assert result, (name, repr(result))
                left_alone()
        assert torch.equal(torch.get_rng_state(), before[0])
        assert random.getstate() == before[1]
        assert (np.random.get_state()[1] == before[2]).all()
    finally:
        torch.serialization._weights_only_unpickler._remove_safe_globals([_LearnerGlobal])


def _demo(name, body):
    exercise(name, notebook="00_demo")(body)
    return REGISTRY[name].fn


def test_learner_exceptions_never_crash_a_check():
    class CheckpointLikeError(
        BaseException
    ):  # torch.distributed.checkpoint's CheckpointException is one
        pass

    def boom(x):
        raise CheckpointLikeError("rank 0 failed: size mismatch")

    try:
        run = _demo("_demo_base", lambda fn: call_answer(fn, 1) and "ok")
        result = run(boom)
        assert (
            result.status == "wrong"
            and "CheckpointLikeError" in result.message
            and "size mismatch" in result.message
        )

        def interrupted(x):
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            run(interrupted)
    finally:
        REGISTRY.pop("_demo_base", None)


def test_forgotten_return_is_not_called_not_attempted(tmp_path, monkeypatch):
    import importlib

    def forgot(x):
        y = x * 2  # noqa: F841  (the learner computed it, then forgot to return it)

    def docstring_only(x):
        """Return x doubled."""

    # the learner edition's placeholder inside a function that has other code around it
    (tmp_path / "learner_cell.py").write_text(
        "def partly(x):\n    y = x + 1\n    pass  # Your turn: write your answer here\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    partly = importlib.import_module("learner_cell").partly
    try:
        run = _demo("_demo_return", lambda fn: call_answer(fn, 3) and "ok")
        forgot_result = run(forgot)
        assert forgot_result.status == "wrong" and "return" in forgot_result.message
        assert run(docstring_only).status == "not attempted"
        assert run(partly).status == "not attempted"
    finally:
        REGISTRY.pop("_demo_return", None)


def test_process_wide_changes_by_an_answer_are_undone_and_reported():
    import torch

    def grad_off(x):
        torch.set_grad_enabled(False)
        return x

    def allow_for_everyone(x):
        torch.serialization.add_safe_globals([_LearnerGlobal])
        return x

    def tidy(x):
        with torch.no_grad(), torch.serialization.safe_globals([_LearnerGlobal]):
            return x

    try:
        run = _demo("_demo_state", lambda fn: call_answer(fn, 3) and "ok")
        r = run(grad_off)
        assert r.status == "wrong" and "autograd off" in r.message and torch.is_grad_enabled()
        r = run(allow_for_everyone)
        assert r.status == "wrong" and "_LearnerGlobal" in r.message and "process-wide" in r.message
        assert _LearnerGlobal not in torch.serialization.get_safe_globals()
        assert run(tidy).status == "correct"

        def own_hint(fn):
            call_answer(fn, 3)
            raise Wrong("allow RunInfo for one load only", covers={"safe_globals"})

        once = _demo("_demo_covers", own_hint)(allow_for_everyone)
        assert once.message == "allow RunInfo for one load only"
    finally:
        REGISTRY.pop("_demo_state", None)
        REGISTRY.pop("_demo_covers", None)


def test_a_checks_own_safe_globals_block_keeps_the_learners_entries():
    """torch's safe_globals context manager removes on exit what it added, even entries that were
    there before; a check that uses it must not take away the learner's own allowlist."""
    import torch

    def uses_block(fn):
        with torch.serialization.safe_globals([_LearnerGlobal]):
            pass
        return "ok"

    torch.serialization.add_safe_globals([_LearnerGlobal])
    try:
        run = _demo("_demo_block", uses_block)
        assert run(lambda: None).status == "correct"
        assert _LearnerGlobal in torch.serialization.get_safe_globals()
    finally:
        REGISTRY.pop("_demo_block", None)
        torch.serialization._weights_only_unpickler._remove_safe_globals([_LearnerGlobal])


def test_isolated_safe_globals_hides_and_restores_the_learners_entries():
    import torch

    from labs_utils.checks import isolated_safe_globals

    torch.serialization.add_safe_globals([_LearnerGlobal])
    try:
        with isolated_safe_globals():
            inside = torch.serialization.get_safe_globals()
            assert _LearnerGlobal not in inside
            assert all(
                getattr(e[0] if isinstance(e, tuple) else e, "__module__", "").startswith("torch")
                for e in inside
            )
        assert _LearnerGlobal in torch.serialization.get_safe_globals()
    finally:
        torch.serialization._weights_only_unpickler._remove_safe_globals([_LearnerGlobal])


def test_as_int_one_rule_for_whole_numbers():
    import numpy as np
    import torch

    from labs_utils.checks import as_int

    assert as_int(7) == 7 and as_int(np.int64(7)) == 7 and as_int(torch.tensor(7)) == 7
    for bad, words in [
        (True, "bool"),
        (7.0, "7 as int"),
        (np.float64(7.5), "float64"),
        ("7", "str"),
    ]:
        with pytest.raises(Wrong, match=words):
            as_int(bad, "the number of steps")
