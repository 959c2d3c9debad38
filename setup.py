"""Build the optional C parts; everything else is in pyproject.toml.

``smartpool._sync._fastlock`` holds the fast paths of ``smartpool.Lock``, ``RLock`` and
``Semaphore``, and
``smartpool._process._copy`` copies large arguments into shared memory without the GIL.
``optional=True``: where no C compiler is available the build goes on without them, and
smartpool uses their pure-Python twins (same behaviour, slower).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "smartpool._sync._fastlock",
            sources=[
                "src/smartpool/_sync/_fastlock.c",
                "src/smartpool/_sync/_fastcommon.c",
                "src/smartpool/_sync/_fastrlock.c",
                "src/smartpool/_sync/_fastsem.c",
            ],
            depends=["src/smartpool/_sync/_fastlock.h"],
            optional=True,
        ),
        Extension(
            "smartpool._process._copy",
            sources=["src/smartpool/_process/_copy.c"],
            optional=True,
        ),
    ]
)
