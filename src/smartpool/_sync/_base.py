"""Common base of the shared primitives: pickling by name and module-global re-attachment."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from . import _registry
from ._shm import BlockGoneError


class SharedObject(ABC):
    """A process-shared object identified by the name of its shared-memory block.

    Subclasses implement ``_create(*args)`` (make new shared state), ``_attach(state)`` (bind
    this instance to existing state) and ``_state()`` (the picklable identity). Pickling sends
    only the identity, so an object can travel to any process of the same user on the machine
    with plain :mod:`pickle` at any time and attaches there by name.
    """

    __slots__ = ("__weakref__",)

    #: Make new shared state; each primitive takes its own constructor arguments.
    _create: Callable[..., None]

    def _init_shared(self, *args: Any) -> None:
        """Create new shared state, or attach to the parent's if this is a known module global."""
        key = _registry.creation_key(self)
        state = _registry.installed_state(key, type(self))
        attached = False
        if state is not None:
            try:
                self._attach(state)
                attached = True
            except BlockGoneError:
                pass
        if not attached:
            self._create(*args)
        _registry.note_module_object(key, self)

    @abstractmethod
    def _attach(self, state: Any) -> None:
        """Bind this instance to the existing shared state named by ``state``."""

    @abstractmethod
    def _state(self) -> Any:
        """The picklable identity of this object's shared state."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self._state()))


def _rebuild(cls: type[SharedObject], state: Any) -> SharedObject:
    obj = cls.__new__(cls)
    obj._attach(state)
    return obj
