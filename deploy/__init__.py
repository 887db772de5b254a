"""Files kafkatrail reads at run time, shipped inside the package: the Kafka broker's POM and log4j
configuration (`kafka/`) and the demo and example trail definitions (`*.yaml`). Read them with
`kafkatrail.deploy.resource(name)`."""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable


def resource(name: str) -> Traversable:
    """The shipped file `name` (a path relative to this folder, such as `kafka/pom.xml`)."""
    return files(__name__).joinpath(name)
