"""What a function changes besides its result, and how one call of it turned out.

The helpers run a function serially first and compare everything else with that run. When
something differs they say why it may have, from what they saw change in the caller's process
while the function ran: module globals and closure variables it wrote (a write made in a worker
process stays there; a write made by several threads at once races) and the global random
generators it drew from (each worker process reseeds them, so draws differ from a serial run).
"""

from __future__ import annotations

import copy
import functools
import inspect
import pickle
import random
import sys
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

#: A shallow copy, typed for anything.
_copy: Callable[[object], object] = copy.copy
#: The mutable containers whose contents are compared (others are compared by identity).
_CONTAINERS = (list, dict, set, bytearray)


@dataclass(frozen=True)
class Outcome:
    """How one call turned out: a value, or the exception it raised."""

    value: Any = None
    error: BaseException | None = None

    @classmethod
    def of(cls, fn: Callable[[Any], Any], item: Any) -> Outcome:
        try:
            return cls(fn(item))
        except Exception as exc:
            return cls(error=exc)

    def same_as(self, other: Outcome, compare: Callable[[Any, Any], object]) -> bool:
        """Equal values (by ``compare``), or exceptions of the same type with the same args."""
        if self.error is not None or other.error is not None:
            return (
                self.error is not None
                and other.error is not None
                and type(self.error) is type(other.error)
                and _equal(self.error.args, other.error.args)
            )
        return bool(compare(self.value, other.value))

    def __str__(self) -> str:
        if self.error is not None:
            return f"raised {type(self.error).__name__}{self.error.args!r}"
        return _short(self.value)


def _short(value: object, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _equal(a: object, b: object) -> bool:
    try:
        return bool(a == b)
    except Exception:  # arrays and other objects without a plain truth value
        return False


def unwrap(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The plain function behind decorators, partials and bound methods (for its globals)."""
    seen: set[int] = set()
    current: Any = fn
    while id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, functools.partial):
            current = current.func
        elif inspect.ismethod(current):
            current = current.__func__
        elif hasattr(current, "__wrapped__"):
            current = current.__wrapped__
        else:
            break
    return current  # type: ignore[no-any-return]


def _places(fn: Callable[..., Any]) -> dict[str, Callable[[], object]]:
    """Each module global and closure variable ``fn`` could write, by description."""
    plain = unwrap(fn)
    places: dict[str, Callable[[], object]] = {}
    if isinstance(plain, types.FunctionType):
        module = plain.__globals__
        module_name = module.get("__name__", "?")
        for name, value in list(module.items()):
            if name.startswith("__") or isinstance(value, (types.ModuleType, type)):
                continue
            if isinstance(value, (types.FunctionType, types.BuiltinFunctionType)):
                continue
            places[f"module global {module_name}.{name}"] = functools.partial(module.get, name)
        for name, cell in zip(plain.__code__.co_freevars, plain.__closure__ or (), strict=False):
            places[f"closure variable {name!r} of {plain.__qualname__}"] = functools.partial(
                _cell_contents, cell
            )
    return places


def _cell_contents(cell: types.CellType) -> object:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell
        return None


@dataclass(frozen=True)
class _Seen:
    value: object
    #: A shallow copy of a container's contents, to tell a mutation in place.
    contents: object


def _see(value: object) -> _Seen:
    return _Seen(value, _contents(value))


def _is_container(value: object) -> bool:
    return isinstance(value, _CONTAINERS)


def _contents(value: object) -> object:
    """A shallow copy of a container (to tell a change in place later), else None."""
    if not _is_container(value):
        return None
    try:
        return _copy(value)
    except Exception:
        return None


def _changed(before: _Seen, after: object) -> bool:
    if after is before.value:
        return before.contents is not None and not _equal(before.contents, after)
    return not _equal(before.value, after)


def _random_states() -> dict[str, bytes]:
    """The state of each global random generator loaded in this process, as bytes."""
    states = {"random": pickle.dumps(random.getstate())}
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        try:
            states["numpy.random"] = pickle.dumps(numpy_random.get_state())
        except Exception:
            pass
    return states


class Snapshot:
    """What ``fn`` could change, as it is now: compare two snapshots to name the changes.

    Example:
        >>> from smartpool.testing._state import Snapshot
        >>> seen = []
        >>> def note(x):
        ...     seen.append(x)
        >>> before = Snapshot(note)
        >>> note(1)
        >>> Snapshot(note).changes_since(before)
        ["closure variable 'seen' of note"]
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        self._places = _places(fn)
        self._seen = {label: _see(get()) for label, get in self._places.items()}
        self._random = _random_states()

    def changes_since(self, earlier: Snapshot) -> list[str]:
        """The places whose value was rebound or whose contents changed since ``earlier``."""
        return [
            label
            for label, get in self._places.items()
            if label in earlier._seen and _changed(earlier._seen[label], get())
        ]

    def random_drawn_since(self, earlier: Snapshot) -> list[str]:
        """The global random generators drawn from since ``earlier``."""
        return [name for name, state in self._random.items() if earlier._random.get(name) != state]


def causes(changed: Iterable[str], drawn: Iterable[str]) -> list[str]:
    """The likely causes of a difference, in words, from what a serial run changed."""
    found = [
        f"fn draws from the global {name} generator: its draws differ from one run to the next, "
        "and each worker process reseeds it; give each item its own seed "
        "(random.Random(seed) or numpy.random.default_rng(seed))"
        for name in drawn
    ]
    changed = list(changed)
    if changed:
        found.append(
            "fn writes " + ", ".join(changed) + ": a write made in a worker process stays in that "
            "process, and writes made by several threads at once race; return the value instead, "
            "or share it explicitly (smartpool.Value, smartpool.Lock)"
        )
    return found


def format_causes(found: list[str]) -> str:
    """The causes as an indented list under a heading; nothing when none was seen."""
    if not found:
        return ""
    return "\nLikely cause(s):\n" + "\n".join(f"  - {c}" for c in found)
