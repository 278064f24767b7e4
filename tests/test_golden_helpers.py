"""The comparison the golden tests make of a set at a cutoff (``helpers.assert_set_at_cutoff``): float ties at the
cutoff are excused, real differences fail."""
from __future__ import annotations

import pytest

from helpers import assert_set_at_cutoff

VALUES = [3.0, 1.00004, 0.99997, 0.2, 2.5]  # cutoff 1: entries 0 and 4 clearly above, 1 and 2 within 1e-4 of it
KEPT = [0, 1, 4]  # at or above the cutoff


def test_equal_sets_and_ties_pass():
    assert_set_at_cutoff(KEPT, [0, 1, 4], VALUES, 1.0, 1e-4, "same set")
    assert_set_at_cutoff(KEPT, [0, 4], VALUES, 1.0, 1e-4, "entry 1 ties: the official run dropped it")
    assert_set_at_cutoff(KEPT, [0, 1, 2, 4], VALUES, 1.0, 1e-4, "entry 2 ties: the official run kept it")
    assert_set_at_cutoff(KEPT, 3, VALUES, 1.0, 1e-4, "same size")
    for size in (2, 4):  # one tie either way
        assert_set_at_cutoff(KEPT, size, VALUES, 1.0, 1e-4, "size within the ties")


def test_an_entry_far_from_the_cutoff_that_differs_fails():
    with pytest.raises(AssertionError, match=r"entries \[3\] differ from the official set with values \[0.2\]"):
        assert_set_at_cutoff(KEPT, [0, 1, 3, 4], VALUES, 1.0, 1e-4, "entry 3")
    with pytest.raises(AssertionError, match=r"entries \[4\] differ"):
        assert_set_at_cutoff(KEPT, [0, 1], VALUES, 1.0, 1e-4, "entry 4")
    with pytest.raises(AssertionError, match=r"entries \[1, 2\] differ"):  # the same values, a tighter budget
        assert_set_at_cutoff(KEPT, [0, 2, 4], VALUES, 1.0, 1e-5, "no ties")


@pytest.mark.parametrize("size", [0, 1, 5])
def test_a_size_beyond_the_ties_fails(size):
    with pytest.raises(AssertionError, match=f"{size} official entries at or above the cutoff 1, 3 of ours; only 2"):
        assert_set_at_cutoff(KEPT, size, VALUES, 1.0, 1e-4, "size")


def test_a_size_differing_without_ties_fails():
    with pytest.raises(AssertionError, match="only 0 of our values"):
        assert_set_at_cutoff(KEPT, 2, VALUES, 1.0, 1e-6, "size")


def test_kept_entries_must_be_those_the_values_put_above_the_cutoff():
    with pytest.raises(AssertionError, match=r"kept below it: \[3\], not kept above it: \[\]"):
        assert_set_at_cutoff([0, 1, 3, 4], [0, 1, 3, 4], VALUES, 1.0, 1e-4, "values of another run")
    with pytest.raises(AssertionError, match=r"kept below it: \[\], not kept above it: \[4\]"):
        assert_set_at_cutoff([0, 1], 2, VALUES, 1.0, 1e-4, "values of another run")
