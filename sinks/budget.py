"""Which of a sink's buffers to send early so that together they hold no more than a memory budget: pure."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

Buffer = TypeVar("Buffer")


def over_budget(held: Iterable[tuple[int, Buffer, bool]], budget: int) -> tuple[list[Buffer], int]:
    """(the buffers to send early, the bytes held after that) for (bytes held, buffer, may go early) triples.

    The largest go first, so the fewest, fullest files or batches are cut short; a buffer that may not go
    early (a file rebuilt to its journaled end) still counts towards the total. When those alone exceed the
    budget, everything else goes and the total stays over it.
    """
    ordered = sorted(held, key=lambda item: item[0], reverse=True)
    total = sum(size for size, _, _ in ordered)
    early = []
    for size, buffer, may_go in ordered:
        if total <= budget:
            break
        if may_go:
            early.append(buffer)
            total -= size
    return early, total
