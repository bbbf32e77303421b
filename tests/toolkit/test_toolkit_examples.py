"""The toolkit's docstring examples run, and every public function and class has one.

Each docstring of a ``labs_utils.toolkit`` module that holds ``>>>`` lines is one test, run with
the standard library's ``doctest`` (``ELLIPSIS | NORMALIZE_WHITESPACE``), so an example that
no longer matches what the code does fails here instead of misleading a reader.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import pytest

import labs_utils.toolkit as toolkit

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _modules() -> list:
    names = [toolkit.__name__] + [
        f"{toolkit.__name__}.{m.name}" for m in pkgutil.iter_modules(toolkit.__path__)
    ]
    return [importlib.import_module(n) for n in names]


def _examples() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    found: dict[str, doctest.DocTest] = {}
    for module in _modules():
        for test in finder.find(module):
            if test.examples:
                found[test.name] = test
    return [found[name] for name in sorted(found)]


EXAMPLES = _examples()


def test_examples_were_found():
    assert len(EXAMPLES) >= 13, [t.name for t in EXAMPLES]  # the package and its public names


@pytest.mark.parametrize("test", EXAMPLES, ids=[t.name for t in EXAMPLES])
def test_docstring_example(test: doctest.DocTest):
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=FLAGS, verbose=False)
    result = runner.run(test, out=report.append, clear_globs=True)
    assert result.attempted == len(test.examples)
    assert result.failed == 0, "".join(report)


def test_every_public_function_and_class_has_an_example():
    with_examples = {t.name for t in EXAMPLES}
    public = {
        name: obj
        for name in toolkit.__all__
        if inspect.isfunction(obj := getattr(toolkit, name)) or inspect.isclass(obj)
    }
    assert len(public) >= 12  # the names the notebooks and the command line use
    lacking = [
        name
        for name, obj in public.items()
        if f"{obj.__module__}.{obj.__qualname__}" not in with_examples
    ]
    assert not lacking, f"public names without an Example:: in their docstring: {lacking}"
    for name, obj in public.items():
        assert "Example::" in inspect.getdoc(obj), name
