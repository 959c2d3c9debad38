"""Re-attaching module globals in workers: the ``export_state`` / ``install_state`` hooks.

A worker that imports a module runs its top-level code again, so ``LOCK = Lock()`` would make a
second, unrelated lock. Every shared object created directly by module-level code is therefore
recorded under a *creation key* ``(module, line, occurrence)``. The parent exports the keys of its
live module-level objects with their pickled identity; a worker installs that table before it
imports anything, and a module-level constructor whose key is in the table attaches to the
parent's object instead of creating a new one. Objects already created before the table was
installed (e.g. modules preloaded into a fork server) are re-pointed in place.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import weakref
from types import CodeType, FrameType
from typing import TYPE_CHECKING, Any, cast

from ._shm import BlockGoneError

if TYPE_CHECKING:
    from ._base import SharedObject

Key = tuple[str, int, int]

_lock = threading.RLock()
_counts: dict[tuple[str, int], int] = {}
_module_objects: dict[Key, weakref.ref[SharedObject]] = {}
_installed: dict[Key, tuple[type[SharedObject], Any]] = {}

_MAIN_ALIASES = {"__mp_main__": "__main__", "__parents_main__": "__main__"}
#: Code of the frames that call a constructor on the caller's behalf (the metaclass's
#: ``__call__``): skipped, like the constructors themselves, to find the creating code.
constructor_frames: set[CodeType] = set()


def creation_key(obj: object) -> Key | None:
    """Key of ``obj``'s creation if a module's top-level code is constructing it, else None."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and (
        frame.f_locals.get("self") is obj or frame.f_code in constructor_frames
    ):
        frame = frame.f_back  # skip the constructors of obj's class and its bases
    if frame is None or frame.f_code.co_name != "<module>":
        return None
    module = str(frame.f_globals.get("__name__", "?"))
    module = _MAIN_ALIASES.get(module, module)
    with _lock:
        site = (module, frame.f_lineno)
        occurrence = _counts.get(site, 0)
        _counts[site] = occurrence + 1
    return (module, site[1], occurrence)


def installed_state(key: Key | None, cls: type[SharedObject]) -> Any | None:
    """The parent's state for a module-level object being created now, if there is one."""
    if key is None:
        return None
    with _lock:
        entry = _installed.get(key)
    if entry is None or entry[0] is not cls:
        return None
    return entry[1]


def note_module_object(key: Key | None, obj: SharedObject) -> None:
    """Remember a module-level object so that :func:`export_state` can describe it."""
    if key is not None:
        with _lock:
            _module_objects[key] = weakref.ref(obj)


def export_state() -> dict[Key, tuple[type[SharedObject], Any]]:
    """Picklable table of this process's live module-level shared objects.

    Call it in the parent when a worker starts and hand the result to :func:`install_state` in
    the worker before the worker imports user modules or unpickles anything.
    """
    table: dict[Key, tuple[type[SharedObject], Any]] = {}
    with _lock:
        for key, ref in list(_module_objects.items()):
            obj = ref()
            if obj is None:
                del _module_objects[key]
            else:
                table[key] = (type(obj), obj._state())
    return table


def install_state(state: object) -> None:
    """Make module-level shared objects of this process refer to the parent's ones.

    ``state`` is what :func:`export_state` returned in the parent. Objects created later by a
    module's top-level code with the same creation key attach to the parent's object; those
    already created are re-pointed now.
    """
    if not isinstance(state, dict):
        raise TypeError(f"install_state expects the result of export_state(), got {state!r}")
    table = cast("dict[Key, tuple[type[SharedObject], Any]]", state)
    with _lock:
        _installed.update(table)
        existing = [(key, ref()) for key, ref in _module_objects.items() if key in table]
    for key, obj in existing:
        cls, obj_state = table[key]
        if obj is not None and type(obj) is cls:
            with contextlib.suppress(BlockGoneError):  # parent dropped it: keep ours
                obj._attach(obj_state)
