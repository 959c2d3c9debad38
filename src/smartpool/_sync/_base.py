"""Common base of the shared primitives: pickling by name and module-global re-attachment."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

from . import _registry
from ._shm import BlockGoneError, Handle, open_handle

#: Set by smartpool's cluster support: what to make instead of ``cls(*args, **kwargs)`` (a
#: cluster-wide primitive, when a cluster reaching other machines is attached), or None.
made_elsewhere: Callable[[type[Any], tuple[Any, ...], dict[str, Any]], object | None] | None = None


class _Made(ABCMeta):
    """Constructs a primitive where it is to live: in shared memory, unless ``made_elsewhere``
    answers with a cluster-wide one."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        hook = made_elsewhere
        if hook is not None:
            made = hook(cls, args, kwargs)
            if made is not None:
                return made
        return super().__call__(*args, **kwargs)


_registry.constructor_frames.add(_Made.__call__.__code__)


class SharedObject(metaclass=_Made):
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


class SemaphoreBinding:
    """Identity and binding of an object whose block carries one semaphore (no state of its own).

    Its identity is the block's name; attaching opens the block by name and binds the
    semaphore and the int64 words for the fast paths. A mixin, so that :class:`Lock` can put
    its C core first among its bases while sharing this code with the other primitives.
    """

    __slots__ = ()
    #: Kind tag written into the block, checked when attaching by name.
    _KIND: ClassVar[int]
    _h: Handle
    _sem: Any
    _w: memoryview

    def _attach(self, state: str) -> None:
        self._bind(open_handle(state, self._KIND))

    def _bind(self, handle: Handle) -> None:
        # The slots are declared by the concrete classes (mypy cannot see that).
        self._h = handle  # type: ignore[misc]
        self._sem = handle.sems[0]
        self._w = handle.words  # type: ignore[misc]

    def _state(self) -> str:
        return self._h.name


class SemaphoreObject(SemaphoreBinding, SharedObject):
    """A shared object whose block carries one semaphore: Semaphore, Event (and Lock's shape)."""

    __slots__ = ("_h", "_sem", "_w")
