"""The compiled modules of the event contract (Cython, see pyproject.toml); everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("schemas.binary", ["schemas/binary.pyx"]),
        Extension("schemas.validation", ["schemas/validation.pyx"]),
    ]
)
