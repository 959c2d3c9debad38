"""Statistics over many texts, computed in parallel with smartpool."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import smartpool


def count_words(text: str) -> int:
    """Words in one text."""
    return len(text.split())


def digest(text: str) -> str:
    """A SHA-256 of one text, in hex."""
    return hashlib.sha256(text.encode()).hexdigest()


def word_counts(texts: Iterable[str]) -> list[int]:
    """Words in each text, in order (said explicitly: a caller's config() scope may ask for
    completion order, and this function's contract is input order)."""
    return smartpool.parallel_map(count_words, texts, ordered=True)


def digests(texts: Iterable[str]) -> list[str]:
    """A digest of each text, in order."""
    return smartpool.parallel_map(digest, texts, ordered=True)


@dataclass
class Report:
    """What ``analyse`` found: results by text index, and what went wrong where."""

    counts: dict[int, int] = field(default_factory=lambda: dict[int, int]())
    failed: dict[int, str] = field(default_factory=lambda: dict[int, str]())


def analyse(texts: list[str], measure: Callable[[str], int] = count_words) -> Report:
    """Measure every text; a text whose worker crashes or overruns is reported, and the batch
    goes on: the results computed before it are kept, the rest are measured again."""
    report = Report()
    todo = list(range(len(texts)))
    while todo:
        try:
            values = smartpool.parallel_map(measure, [texts[i] for i in todo], timeout=60)
        except (smartpool.WorkerCrashedError, smartpool.TaskTimeoutError) as error:
            position = error.index or 0  # timeout= runs one item per chunk: the failing one
            for done, value in error.completed.items():
                report.counts[todo[done]] = value
            report.failed[todo[position]] = type(error).__name__
            todo = [i for p, i in enumerate(todo) if p != position and p not in error.completed]
        else:
            report.counts.update(zip(todo, values, strict=True))
            todo = []
    return report
