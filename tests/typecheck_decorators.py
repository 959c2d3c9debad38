"""Checked by mypy --strict in CI (not collected by pytest): decorators keep their signatures."""

from __future__ import annotations

from concurrent.futures import Future

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
smartpool.parallel_map(abs, [1], max_wrokers=3)  # type: ignore[call-arg]
lookup.map(["a"], ordered="yes")  # type: ignore[arg-type]
smartpool.parallel_map(abs, [1], backend="gpu")  # type: ignore[arg-type]
