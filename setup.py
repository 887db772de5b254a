"""The compiled modules of the event contract (Cython, see pyproject.toml); everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("kafkatrail.schemas.binary", ["schemas/binary.pyx"]),
        Extension("kafkatrail.schemas.validation", ["schemas/validation.pyx"]),
    ]
)
