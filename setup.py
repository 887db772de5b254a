"""The compiled modules (Cython, see pyproject.toml): the event contract's hot paths and the dedupe window's store
of eventIDs; everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("kafkatrail.schemas.binary", ["schemas/binary.pyx"]),
        Extension("kafkatrail.schemas.validation", ["schemas/validation.pyx"]),
        Extension("kafkatrail.processors.dedupe_ids", ["processors/dedupe_ids.pyx"]),
    ]
)
