"""over_budget: which buffers a sink sends early to stay within its memory budget."""

from __future__ import annotations

import pytest

from kafkatrail.sinks.budget import over_budget

CASES = {
    "nothing held": ([], 10, [], 0),
    "within the budget": ([(4, "a", True), (5, "b", True)], 10, [], 9),
    "exactly at the budget": ([(5, "a", True), (5, "b", True)], 10, [], 10),
    "the largest goes first": ([(4, "a", True), (7, "b", True), (2, "c", True)], 10, ["b"], 6),
    "as many as needed": ([(4, "a", True), (5, "b", True), (6, "c", True)], 5, ["c", "b"], 4),
    "one that may not go still counts": ([(8, "rebuilt", False), (3, "a", True), (2, "b", True)], 10, ["a"], 10),
    "over even after all that may go": ([(12, "rebuilt", False), (3, "a", True)], 10, ["a"], 12),
    "a zero budget sends everything that may go": ([(1, "a", True), (1, "b", True)], 0, ["a", "b"], 0),
}


@pytest.mark.parametrize(("held", "budget", "early", "after"), CASES.values(), ids=CASES.keys())
def test_the_largest_buffers_go_early_until_the_rest_fits(held: list, budget: int, early: list, after: int) -> None:
    assert over_budget(held, budget) == (early, after)
