"""Every public name of smartpool.testing is documented with an example that runs."""

from __future__ import annotations

import doctest
import inspect

import pytest

import smartpool.testing
from smartpool.testing import strategies

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
#: Public names that are types for annotations, with nothing to run.
TYPES = {"Fault"}
STRATEGIES = [
    name
    for name, obj in vars(strategies).items()
    if inspect.isfunction(obj) and obj.__module__ == strategies.__name__ and name[0] != "_"
]


@pytest.mark.parametrize(
    ("owner", "name"),
    [(smartpool.testing, n) for n in sorted(set(smartpool.testing.__all__) - TYPES)]
    + [(strategies, n) for n in STRATEGIES],
)
def test_each_public_name_has_an_example_that_passes(owner: object, name: str) -> None:
    obj = getattr(owner, name)
    tests = doctest.DocTestFinder().find(obj, name, globs={})
    assert any(t.examples for t in tests), f"{name} has no example in its docstring"
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


@pytest.mark.parametrize("module", [smartpool.testing, strategies])
def test_the_modules_examples_pass(module: object) -> None:
    tests = doctest.DocTestFinder(recurse=False).find(module, globs={})
    assert any(t.examples for t in tests)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
