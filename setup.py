"""Build the optional C fast path of ``smartpool.Lock``; everything else is in pyproject.toml.

``optional=True``: where no C compiler is available the build goes on without it and
``smartpool.Lock`` uses its pure-Python twin (same behaviour, slower acquire/release).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "smartpool._sync._fastlock",
            sources=["src/smartpool/_sync/_fastlock.c"],
            optional=True,
        )
    ]
)
