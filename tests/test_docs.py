"""The documentation cannot rot: its examples run, and every public name is documented.

Convention for examples in README.md, docs/**/*.md and examples/:

* A fenced ```python (or ```py, ```pycon) block written as an interactive session, with ``>>>``
  prompts, is run with :mod:`doctest` (output compared, ``...`` matching anything: ELLIPSIS is
  on), in file order, sharing one namespace per file, as if typed into one interpreter.
* A block without prompts is a sketch: it names functions or inputs the reader supplies, so it
  is not run; it must still compile, and every ``smartpool.NAME`` it uses (and every option it
  passes to ``parallel_map``, ``imap``, ``explain`` or a decorator) must exist.
* Every ``examples/*.py`` script runs to completion in a fresh interpreter and prints something.

Pages are found by glob, so a new page's examples run without editing this file.
"""

from __future__ import annotations

import ast
import doctest
import inspect
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import smartpool

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", *DOCS.rglob("*.md")])
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
#: Pages whose examples are written as sessions: each must keep at least one runnable block.
SESSION_PAGES = (
    "index.md",
    "getting-started.md",
    "threads-or-processes.md",
    "routing.md",
    "api.md",
    "processes.md",
    "testing.md",
)
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

#: A fenced Python block, at any indentation (inside a list item too).
_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?:python3?|py|pycon)\b[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.DOTALL | re.MULTILINE,
)
#: Any line opening a Python fence: each must belong to a block that _FENCE finds.
_OPENING = re.compile(r"^[ \t]*```(?:python3?|py|pycon)\b", re.MULTILINE)
#: An ``Example::`` literal block in a docstring (a sketch), after :func:`inspect.getdoc`.
_LITERAL = re.compile(
    r"^(?P<indent>[ \t]*)Examples?::[ \t]*\n(?P<body>(?:(?P=indent)[ \t]+\S.*\n|[ \t]*\n)+)",
    re.MULTILINE,
)
#: The calls whose keyword arguments are smartpool's options (MapOptions).
_OPTION_TAKERS = {"parallel_map", "imap", "explain", "cpu_bound", "io_bound", "auto"}


def python_blocks(text: str) -> Iterator[tuple[int, str]]:
    """(line number of the block's first line, dedented source) of each Python block."""
    for match in _FENCE.finditer(text):
        yield text.count("\n", 0, match.start("body")), textwrap.dedent(match.group("body"))


def is_session(source: str) -> bool:
    return any(line.lstrip().startswith(">>>") for line in source.splitlines())


def runnable_blocks(text: str) -> Iterator[tuple[int, str]]:
    """(line number of the block's first line, source) of each Python block with prompts."""
    return ((lineno, source) for lineno, source in python_blocks(text) if is_session(source))


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


def sketch_problems(source: str) -> list[str]:
    """What in a sketch does not exist in smartpool (``smartpool.NAME``, options); [] if fine."""
    tree = ast.parse(source)
    modules = {"smartpool"}  # pages import it once, in an earlier block
    problems: list[str] = []
    options = set(smartpool.MapOptions.__annotations__)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.asname or a.name for a in node.names if a.name == "smartpool"}
        elif isinstance(node, ast.ImportFrom) and node.module == "smartpool":
            problems += [
                f"smartpool.{a.name}" for a in node.names if not hasattr(smartpool, a.name)
            ]
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and not hasattr(smartpool, node.attr)
        ):
            problems.append(f"smartpool.{node.attr}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in modules
            and node.func.attr in _OPTION_TAKERS
        ):
            problems += [
                f"option {kw.arg}= of smartpool.{node.func.attr}"
                for kw in node.keywords
                if kw.arg is not None and kw.arg not in options
            ]
    return problems


@pytest.fixture(autouse=True)
def _fresh_decisions() -> Iterator[None]:
    smartpool.forget()
    yield
    smartpool.forget()


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_runnable_examples_in_the_docs_pass(path: Path) -> None:
    _, failed = run_session(path)
    assert failed == 0, f"{failed} example(s) in {path.name} failed; doctest printed them above"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_sketches_in_the_docs_compile_and_use_only_what_exists(path: Path) -> None:
    for lineno, source in python_blocks(path.read_text(encoding="utf-8")):
        if is_session(source):
            continue
        where = f"{path.relative_to(ROOT)}:{lineno + 1}"
        try:
            compile(source, where, "exec")
        except SyntaxError as error:
            pytest.fail(f"the sketch at {where} does not compile: {error}")
        problems = sketch_problems(source)
        assert not problems, f"the sketch at {where} uses what does not exist: {problems}"


def public_objects() -> Iterator[tuple[str, object]]:
    """Every public name of smartpool, and the public attributes of its classes."""
    for name in smartpool.__all__:
        obj = getattr(smartpool, name)
        yield f"smartpool.{name}", obj
        if isinstance(obj, type):
            for attr, member in vars(obj).items():
                if not attr.startswith("_"):
                    yield f"smartpool.{name}.{attr}", member


def test_sketches_in_public_docstrings_compile_and_use_only_what_exists() -> None:
    checked = 0
    for where, obj in public_objects():
        for match in _LITERAL.finditer((inspect.getdoc(obj) or "") + "\n"):
            source = textwrap.dedent(match.group("body"))
            try:
                compile(source, where, "exec")
            except SyntaxError as error:
                pytest.fail(f"the Example:: block of {where} does not compile: {error}")
            problems = sketch_problems(source)
            assert not problems, (
                f"the Example:: block of {where} uses what does not exist: {problems}"
            )
            checked += 1
    assert checked >= 6  # Lock, RLock, Semaphore, BoundedSemaphore, Event, Value have one


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_python_fence_is_found(path: Path) -> None:
    # A fence the parser missed (an unclosed block, a closing fence indented differently)
    # would silently take its examples out of the tests.
    text = path.read_text(encoding="utf-8")
    assert len(_OPENING.findall(text)) == len(list(python_blocks(text))), (
        f"{path.name}: a ```python block is not closed at its own indentation"
    )


def test_the_checks_see_what_they_check() -> None:
    page = "Text\n\n* item:\n\n  ```python\n  >>> 1 + 1\n  2\n  ```\n\n```py\nx = 1\n```\n"
    assert [source for _, source in python_blocks(page)] == [">>> 1 + 1\n2\n", "x = 1\n"]
    assert len(list(runnable_blocks(page))) == 1
    assert (
        len(_OPENING.findall("```python\nx = 1\n"))
        == 1
        != len(list(python_blocks("```python\nx = 1\n")))
    )
    assert sketch_problems("import smartpool as sp\nsp.parallel_map(f, xs, retries=2)") == []
    assert sketch_problems("import smartpool as sp\nsp.paralel_map(f, xs)") == [
        "smartpool.paralel_map"
    ]
    assert sketch_problems("smartpool.imap(f, xs, chunk=2)") == ["option chunk= of smartpool.imap"]
    assert sketch_problems("from smartpool import Lock, Lok") == ["smartpool.Lok"]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_run(example: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(example)], capture_output=True, text=True, timeout=240, cwd=ROOT
    )
    assert done.returncode == 0, f"{example.name}: {done.stderr}"
    assert done.stdout.strip(), f"{example.name} printed nothing"


def test_there_are_examples_to_run() -> None:
    assert EXAMPLES, "examples/ has no script"


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
