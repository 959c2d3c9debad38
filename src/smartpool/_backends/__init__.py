"""Backends: one small class each behind one interface (``base``), found by name (``registry``)."""

from .registry import lease as lease
from .registry import names as names
from .registry import shutdown as shutdown
from .registry import traits as traits
from .registry import warm_workers as warm_workers
