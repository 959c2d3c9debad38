"""The ``smartpool`` command.

``smartpool demo`` measures three real workloads on every backend and shows what smartpool picks;
``smartpool advise MODULE:FUNCTION [ARG ...]`` does the same for your own function.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, TextIO, cast

from . import _demo_workloads, _explain
from ._advise import BACKENDS, Advice, advise, compare
from ._errors import SmartpoolError
from ._routing import cost, memory
from ._transport.frames import only_users_frames
from ._version import __version__


def _workloads(quick: bool) -> list[tuple[str, Callable[[Any], Any], list[Any]]]:
    scale = 1 if quick else 4
    return [
        ("pure-Python CPU", _demo_workloads.cpu_python, [150_000 * scale] * 16),
        ("sha256 (releases GIL)", _demo_workloads.hash_blocks, [4 * scale] * 16),
        ("I/O waits", _demo_workloads.wait_io, [0.02] * (25 * scale)),
    ]


def _cells(seconds: dict[str, float]) -> str:
    serial = seconds["serial"]
    return "".join(f"{seconds[b]:.3f}s ({serial / seconds[b]:.1f}x)".rjust(16) for b in BACKENDS)


def _header(first: str, out: TextIO, picks: str = "smartpool picks") -> None:
    header = f"{first:<24}" + "".join(f"{b:>16}" for b in BACKENDS)
    print(header + f"{'fastest':>10}{picks:>18}", file=out)
    print("-" * (len(header) + 28), file=out)


def demo(quick: bool = False, out: TextIO | None = None) -> list[dict[str, Any]]:
    """Run each workload on each backend; print a table; return the rows."""
    out = out if out is not None else cast(TextIO, sys.stdout)
    cores = cost.cpu_count()
    print(
        f"smartpool demo on {cores} core(s); wall-clock seconds (speed-up over serial).\n", file=out
    )
    _header("workload", out)
    rows: list[dict[str, Any]] = []
    for name, fn, items in _workloads(quick):
        seconds = compare(fn, items)
        fastest = min(seconds, key=seconds.__getitem__)
        memory.forget(fn)
        picked = _explain.explain(fn, items).backend  # what backend="auto" decides, probe included
        print(f"{name:<24}{_cells(seconds)}{fastest:>10}{picked:>18}", file=out)
        rows.append({"workload": name, "seconds": seconds, "fastest": fastest, "picked": picked})
    print(
        "\n'smartpool picks' is what backend='auto' chooses after probing the first items.",
        file=out,
    )
    return rows


def print_advice(advice: Advice, out: TextIO) -> None:
    c = advice.classification
    print(f"{advice.function}: {c.kind}. {c.reason[0].upper()}{c.reason[1:]}\n", file=out)
    _header(f"{advice.calls} calls", out, picks="estimate picks")
    print(f"{'':<24}{_cells(advice.seconds)}{advice.fastest:>10}{advice.picked:>18}\n", file=out)
    print(f"Verdict: use backend={advice.verdict!r}. Why:", file=out)
    for reason in advice.reasons:
        print(f"  - {reason}", file=out)


def load_function(target: str) -> Callable[..., Any]:
    """``package.module:function`` (or ``module:Class.method``) to the callable it names."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise SystemExit(f"smartpool advise: expected MODULE:FUNCTION, got {target!r}")
    try:
        found: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise SystemExit(f"smartpool advise: cannot load {target!r}: {exc}") from exc
    if not callable(found):
        raise SystemExit(f"smartpool advise: {target!r} is not callable")
    return found  # type: ignore[no-any-return]


def check_arguments(fn: Callable[..., Any], args: Sequence[Any], target: str) -> None:
    """Exit with one clear line when ``fn`` cannot take ``args``, before calling it at all."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have none: the call itself will tell
        return
    try:
        signature.bind(*args)
    except TypeError as exc:
        listed = ", ".join(map(repr, args))
        given = {0: "no arguments", 1: f"the argument {listed}"}.get(
            len(args), f"the arguments {listed}"
        )
        raise SystemExit(
            f"smartpool advise: {target}{signature} cannot be called with {given}: {exc}"
        ) from None


def report_failure(call: str, error: BaseException, out: TextIO) -> None:
    """Say that the user's ``call`` raised ``error``, showing only their own code's frames."""
    if isinstance(error, SmartpoolError):  # smartpool's own error about their function
        print(f"smartpool advise: {call} could not be timed on every backend:", file=out)
    else:
        print(f"smartpool advise: {call} raised {type(error).__name__}; your frames:", file=out)
    traceback.print_exception(only_users_frames(error), file=out)


def parse_argument(text: str) -> Any:
    """A Python literal (``3``, ``0.5``, ``[1, 2]``) when it is one, else the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


DESCRIPTION = """\
smartpool demo measures three workloads on every backend and shows what smartpool picks;
smartpool advise MODULE:FUNCTION [ARG ...] does the same for your own function."""

DEMO = """\
Times pure-Python CPU work, sha256 hashing (which releases the GIL) and I/O waits on the
serial, thread and process backends, and shows the backend backend="auto" picks for each.
Takes well under a minute (--quick: a few seconds)."""

ADVISE = """\
Calls FUNCTION(ARG, ...) once to classify it, then times many such calls on every backend
(enough for the serial run to take about half a second, from 8 to 2000 calls), and says
which backend to use and why."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smartpool", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"smartpool {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser(
        "demo", help="measure three workloads on every backend", description=DEMO
    )
    demo_parser.add_argument("--quick", action="store_true", help="smaller workloads (seconds)")
    advise_parser = commands.add_parser(
        "advise", help="measure your function on every backend", description=ADVISE
    )
    advise_parser.add_argument(
        "target", metavar="MODULE:FUNCTION", help="the function, e.g. mypackage.images:resize"
    )
    advise_parser.add_argument(
        "args",
        nargs="*",
        metavar="ARG",
        help="the arguments of one call: Python literals (3, 0.5, [1, 2]), else strings",
    )
    advise_parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo(quick=args.quick)
        return 0
    sys.path.insert(0, "")  # like `python -m`: modules in the current directory can be named
    fn = load_function(args.target)
    call_args = [parse_argument(a) for a in args.args]
    check_arguments(fn, call_args, args.target)
    try:
        advice = advise(fn, call_args, name=args.target)
    except Exception as error:  # the user's function raised: theirs to see, not smartpool's frames
        report_failure(f"{args.target}({', '.join(map(repr, call_args))})", error, sys.stderr)
        return 1
    if args.json:
        json.dump(advice.as_dict(), sys.stdout, indent=2, default=str)
        print()
    else:
        print_advice(advice, sys.stdout)
    return 0
