"""smartpool: parallel map that decides threads vs processes for you."""

__version__ = "0.1.0.dev0"
