"""The documentation cannot rot: its runnable examples run, and every public name is documented.

Convention for examples in README.md and docs/*.md: a fenced ```python block is runnable when it
is written as an interactive session, with ``>>>`` prompts. Such blocks run with :mod:`doctest`
(output compared, ``...`` matching anything: ELLIPSIS is on), in file order, sharing one namespace
per file, as if typed into one interpreter. Blocks without prompts are sketches (they name
functions or inputs the reader supplies) and are not run.
"""

from __future__ import annotations

import doctest
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import smartpool

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", *DOCS.glob("*.md")])
#: Pages whose examples are written as sessions: each must keep at least one runnable block.
SESSION_PAGES = ("index.md", "routing.md", "api.md", "processes.md", "testing.md")
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


def runnable_blocks(text: str) -> Iterator[tuple[int, str]]:
    """(line number of the block's first line, source) of each ```python block with prompts."""
    for match in _FENCE.finditer(text):
        source = match.group(1)
        if any(line.lstrip().startswith(">>>") for line in source.splitlines()):
            yield text.count("\n", 0, match.start(1)), source


def run_session(path: Path) -> tuple[int, int]:
    """Run every runnable block of ``path`` in one namespace; (blocks, failures)."""
    text = path.read_text(encoding="utf-8")
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    globs: dict[str, Any] = {"__name__": "__main__"}
    blocks = 0
    for lineno, source in runnable_blocks(text):
        name = f"{path.relative_to(ROOT)}:{lineno + 1}"
        test = parser.get_doctest(source, globs, name, str(path), lineno)
        test.globs = globs  # get_doctest copies it: share one namespace across the file's blocks
        runner.run(test, clear_globs=False)
        blocks += 1
    return blocks, runner.summarize(verbose=False).failed


@pytest.fixture(autouse=True)
def _fresh_decisions() -> Iterator[None]:
    smartpool.forget()
    yield
    smartpool.forget()


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_runnable_examples_in_the_docs_pass(path: Path) -> None:
    _, failed = run_session(path)
    assert failed == 0, f"{failed} example(s) in {path.name} failed; doctest printed them above"


@pytest.mark.parametrize("page", SESSION_PAGES)
def test_each_written_page_has_runnable_examples(page: str) -> None:
    text = (DOCS / page).read_text(encoding="utf-8")
    assert list(runnable_blocks(text)), f"docs/{page} has no ```python block with >>> prompts"


def test_every_public_name_has_a_section_in_the_api_reference() -> None:
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    headings = {
        name
        for line in text.splitlines()
        if line.startswith("#")
        for name in re.findall(r"`(?:smartpool\.)?([A-Za-z_]\w*)", line)
    }
    missing = sorted(set(smartpool.__all__) - headings)
    assert not missing, f"docs/api.md has no heading for: {', '.join(missing)}"


def public_docstring_tests() -> list[doctest.DocTest]:
    """The doctests in smartpool's own docstring and in each public object's (methods too)."""
    finder = doctest.DocTestFinder(recurse=False)
    tests = finder.find(smartpool, "smartpool", module=False)
    finder = doctest.DocTestFinder(recurse=True)
    for name in smartpool.__all__:
        obj = getattr(smartpool, name)
        tests += finder.find(obj, f"smartpool.{name}", module=False, globs={})
    return [t for t in tests if t.examples]


def test_public_docstring_examples_pass() -> None:
    tests = public_docstring_tests()
    assert len(tests) >= 10  # the convention is examples on the entry points: keep them
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed; see above"
