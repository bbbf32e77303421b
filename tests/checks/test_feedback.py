"""What a learner sees (issue 23): the verdict as plain text and as a coloured box, the learner's
own line when their code raised, links only to other notebooks, check.hint / solution / progress,
and comparison with a reference (behaves_like)."""

import importlib
import re

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
    load_all,
)

load_all()


def _demo(name, body):
    exercise(name, notebook="02_architecture_mismatch")(body)
    return REGISTRY[name].fn


@pytest.fixture
def demo():
    names = []

    def make(name, body):
        names.append(name)
        return _demo(name, body)

    yield make
    for name in names:
        REGISTRY.pop(name, None)


def test_each_verdict_is_plain_text_and_a_coloured_box():
    correct = CheckResult("x", "correct", "all good", "02_a", home="02_a")
    wrong = CheckResult("x", "wrong", "a <b> & c", "02_a", home="02_a")
    todo = CheckResult("x", "not attempted", "", "02_a", home="02_a")
    assert repr(correct) == "Correct! all good"
    assert repr(wrong) == "Not yet: a <b> & c"
    assert repr(todo).startswith("Not attempted yet")
    for result, kind, colour in [
        (correct, "correct", "#2e7d32"),
        (wrong, "wrong", "#d84315"),
        (todo, "unattempted", "#808080"),
    ]:
        html = result._repr_html_()
        assert html.startswith(f'<div class="labs-check labs-check--{kind}" style="')
        assert colour in html and "rgba(" in html  # translucent: light and dark themes
        assert html == result._repr_html_()  # deterministic: no ids, no times
        assert not re.search(r"id=|\d{10}", html)
    assert "a &lt;b&gt; &amp; c" in wrong._repr_html_()


def test_a_hint_links_only_to_another_notebook_relatively():
    same = CheckResult(
        "x", "wrong", "m", "02_architecture_mismatch", home="02_architecture_mismatch"
    )
    other = CheckResult("x", "wrong", "m", "08_safe_loading", home="12_capstone_lab")
    assert "see" not in repr(same) and "notebooks/" not in repr(same)
    assert repr(other) == "Not yet: m (see 08_safe_loading.ipynb)"
    assert '<a href="08_safe_loading.ipynb">' in other._repr_html_()


def test_the_capstone_names_the_lesson_that_teaches_the_fix():
    result = check.capstone_load_safely(
        lambda path: __import__("torch").load(path, weights_only=False)
    )
    assert result.status == "wrong" and repr(result).count("(see 08_safe_loading.ipynb)") == 1


def test_the_learners_own_line_is_shown_when_their_code_raised(tmp_path, monkeypatch, demo):
    (tmp_path / "learner_where.py").write_text(
        "def answer(x):\n    y = x + 1\n    return y / 0  # the learner's slip\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    answer = importlib.import_module("learner_where").answer
    run = demo("_demo_where", lambda fn: call_answer(fn, 3) and "ok")
    result = run(answer)
    assert result.where == "learner_where.py, line 3: return y / 0  # the learner's slip"
    assert "\n  at: learner_where.py, line 3" in repr(result)
    assert "at: <code>learner_where.py, line 3" in result._repr_html_()
    assert run(lambda x: x).where == ""


def test_hint_solution_and_progress():
    name = "remap_keys"
    REGISTRY[name].hints_given = 0
    REGISTRY[name].last = None
    first = check.hint(name)
    assert first.startswith("Hint 1/2: ") and "section 6" in first  # the notebook's # Hint:
    assert check.hint(name).startswith("Hint 2/2: What the check tries")
    assert "check.solution" in check.hint(name)
    solution = check.solution(name)
    assert "def remap_keys" in solution and "BEGIN SOLUTION" not in solution
    assert "<pre" in solution._repr_html_()

    check.remap_keys(lambda sd: sd)  # wrong
    check.doc_input_size(28)  # right
    progress = check.progress()
    assert progress.startswith("02_architecture_mismatch: 1 of 2 done")
    assert re.search(r"not yet\s+remap_keys", progress) and re.search(
        r"done\s+doc_input_size", progress
    )
    REGISTRY[name].hints_given = 0
    assert "Your last try" in [check.hint(name) for _ in range(3)][-1]
    assert check.progress("01").startswith("01_state_dict_basics: ")


def test_behaves_like_names_a_known_mistake_or_the_first_difference(demo):
    def reference(keys):
        return [k.removeprefix("model.") for k in keys]

    def lstrip(keys):
        return [k.lstrip("model.") for k in keys]

    cases = [
        Case("keys like `model.head.weight`", lambda: (["model.head.weight"],)),
        Case("keys like `model.layer.weight`", lambda: (["model.layer.weight"],)),
    ]
    mistakes = [(lstrip, "str.lstrip strips characters, not a prefix")]
    run = demo("_demo_like", lambda fn: behaves_like(fn, reference, cases, mistakes) or "ok")
    assert run(reference).status == "correct"
    assert run(lstrip).message == "str.lstrip strips characters, not a prefix"
    other = run(lambda keys: [k.lstrip("mod") for k in keys])
    assert other.message == (
        "for keys like `model.head.weight` you returned 'el.head.weight' at [0]; expected 'head.weight'"
    )

    def in_place(keys):
        keys[0] = "x"
        return reference(["model.head.weight"])

    assert run(in_place).message.startswith(
        "for keys like `model.head.weight` you changed your input: 'x' at [0]"
    )
    raised = run(lambda keys: 1 / 0)
    assert "ZeroDivisionError" in raised.message


def test_a_learners_notebook_global_does_not_stand_in_for_a_parameter(demo):
    namespace = {"scaler": object()}
    exec("def f(scaler):\n    return 'scaler' in globals()\n", namespace)

    def body(fn):
        if call_answer(fn, 1) is not False:
            raise Wrong("used globals()")
        return "ok"

    assert demo("_demo_globals", body)(namespace["f"]).status == "correct"
    assert "scaler" in namespace  # the learner's namespace is left as it was


def test_a_known_mistake_that_raises_matches_an_answer_that_raises_alike(demo):
    def reference(sd, key):
        return sd.get(key, 0)

    def indexes(sd, key):
        return sd[key]

    cases = [
        Case("a key that is there", lambda: ({"a": 1}, "a")),
        Case("a missing key", lambda: ({}, "b")),
    ]
    run = demo(
        "_demo_raises",
        lambda fn: behaves_like(fn, reference, cases, [(indexes, "use .get")]) or "ok",
    )
    assert run(lambda sd, key: sd[key]).message == "use .get"
    assert (
        "KeyError" in run(lambda sd, key: {}[key]).message
    )  # raises on every case: not that mistake
