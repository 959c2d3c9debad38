"""Checked by mypy --strict and pyright in CI (not collected by pytest): the public calls keep
their signatures, and wrong calls are reported.

Each ``# type: ignore[code]`` marks a line that must fail: mypy's ``warn_unused_ignores``
(part of --strict) and pyright's ``reportUnnecessaryTypeIgnoreComment`` (below) fail the check
if a checker stops reporting it.
"""

# pyright: reportUnnecessaryTypeIgnoreComment=true

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from typing_extensions import assert_type

import smartpool


@smartpool.cpu_bound
def crunch(n: int, *, scale: int = 1) -> str:
    return str(n * scale)


@smartpool.io_bound(max_workers=3)
def fetch(key: str) -> bytes:
    return key.encode()


assert_type(crunch(1, scale=2), str)
assert_type(fetch("k"), bytes)
assert_type(crunch.map([1, 2]), list[str])
assert_type(crunch.submit(1, scale=3), Future[str])
assert_type(smartpool.parallel_map(abs, [1, -2]), list[int])
assert_type(smartpool.explain(abs, [1]), smartpool.Plan)
crunch("one")  # type: ignore[arg-type]  # the wrapped signature is enforced


# Every option the runtime accepts is typed, on the decorators and the calls (MapOptions).
@smartpool.io_bound(ordered=False, retries=2, retry_on=ValueError)
def lookup(key: str) -> int:
    return len(key)


assert_type(lookup("k"), int)
assert_type(lookup.map(["a"], ordered=True, timeout=1.5), list[int])
assert_type(smartpool.imap(abs, [1], backend="thread"), smartpool.ResultIterator[int])
options: smartpool.MapOptions = {"backend": "process", "chunksize": 4}
assert_type(smartpool.parallel_map(abs, [1], **options), list[int])
# Misspelled or mistyped options are reported, on purpose (warn_unused_ignores proves it).
smartpool.parallel_map(abs, [1], max_wrokers=3)  # type: ignore[call-overload]
lookup.map(["a"], ordered="yes")  # type: ignore[call-overload]
smartpool.parallel_map(abs, [1], backend="gpu")  # type: ignore[call-overload]
crunch.map(range(3), max_wrokers=3)  # type: ignore[call-overload]
crunch.imap(range(3), chunksize="big")  # type: ignore[call-overload]

# Items are checked against the function's parameter, on .map/.imap and the calls.
crunch.map(["x"])  # type: ignore[list-item]
crunch.imap(["x"])  # type: ignore[list-item]
smartpool.parallel_map(crunch, ["x"])  # type: ignore[arg-type]
assert_type(crunch.imap(range(3)), smartpool.ResultIterator[str])


# submit checks the arguments against the function's signature (ParamSpec).
def plain(n: int, *, label: str = "") -> float:
    return n / 2


assert_type(smartpool.submit(plain, 3, label="x"), Future[float])
smartpool.submit(plain, "x")  # type: ignore[arg-type]
smartpool.submit(plain, 1, lable="x")  # type: ignore[call-arg]
crunch.submit("x")  # type: ignore[arg-type]

# Lifecycle options are typed like the others.
assert_type(
    smartpool.parallel_map(plain, [1], initializer=print, initargs=("hi",), max_tasks_per_child=5),
    list[float],
)
smartpool.parallel_map(plain, [1], initargs="hi")  # type: ignore[call-overload]
smartpool.parallel_map(plain, [1], initializer=3)  # type: ignore[call-overload]


# Several iterables: each one is checked against its parameter.
def scale(n: int, factor: float) -> float:
    return n * factor


@smartpool.io_bound
def label(n: int, text: str) -> str:
    return f"{text}{n}"


assert_type(smartpool.parallel_map(scale, [1, 2], [0.5, 2.0]), list[float])
assert_type(smartpool.imap(scale, [1], [0.5]), smartpool.ResultIterator[float])
assert_type(label.map([1], ["a"]), list[str])
assert_type(label.imap([1], ["a"]), smartpool.ResultIterator[str])
smartpool.parallel_map(scale, [1], ["half"])  # type: ignore[arg-type]
label.map([1], [2])  # type: ignore[list-item]
assert_type(smartpool.starmap(scale, [(1, 0.5)]), list[float])
assert_type(smartpool.istarmap(scale, [(1, 0.5)]), smartpool.ResultIterator[float])

# with_index pairs each result with its index.
assert_type(
    smartpool.imap(plain, [1], ordered=False, with_index=True),
    smartpool.ResultIterator[tuple[int, float]],
)
assert_type(crunch.imap([1], with_index=True), smartpool.ResultIterator[tuple[int, str]])
assert_type(
    smartpool.istarmap(scale, [(1, 0.5)], with_index=True),
    smartpool.ResultIterator[tuple[int, float]],
)

# worker_state is a plain dict.
assert_type(smartpool.worker_state(), dict[str, Any])
