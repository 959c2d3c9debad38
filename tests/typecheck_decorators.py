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
