"""What a worker's stop means to the code below the runtime."""


class WorkerStopping(Exception):
    """A stop arrived while work was being retried; the work in hand is left to the partitions' next owner."""
