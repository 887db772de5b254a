"""Which AWS partition a region belongs to, read from botocore's endpoint data rather than a hand-kept list."""

from __future__ import annotations

import functools

import botocore.session
from botocore.exceptions import UnknownRegionError
from botocore.regions import EndpointResolver


@functools.cache
def _resolver() -> EndpointResolver:
    loader = botocore.session.get_session().get_component("data_loader")
    return EndpointResolver(loader.load_data("endpoints"))


@functools.cache
def partition_of(region: str) -> str | None:
    """The partition (``aws``, ``aws-cn``, ``aws-us-gov``, ...) of ``region``; None if no partition claims it.

    botocore matches a region by its partition's listed regions or region-name pattern, so a region
    AWS adds later is recognised as long as its name follows its partition's pattern.
    """
    try:
        return _resolver().get_partition_for_region(region)
    except UnknownRegionError:
        return None
