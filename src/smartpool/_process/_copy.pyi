"""Types of the GIL-free copy of large buffers (``_copy.c``)."""

from typing_extensions import Buffer

def copy_into(destination: Buffer, source: Buffer, /) -> None: ...
