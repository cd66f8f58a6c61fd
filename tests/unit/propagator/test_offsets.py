"""What a loop that finishes records out of order commits: never past a record still running."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from setaccounts_propagator.offsets import InFlight


def test_the_commit_stops_at_the_first_unfinished_record() -> None:
    flight: InFlight[str] = InFlight()
    epochs = {o: flight.take("p", o) for o in (10, 11, 12)}
    flight.finish("p", 11, epochs[11])
    flight.finish("p", 12, epochs[12])
    assert flight.commits() == {}
    assert len(flight) == 1
    flight.finish("p", 10, epochs[10])
    assert flight.commits() == {"p": 13}
    assert flight.commits() == {}, "a front that did not move is not committed again"


def test_a_record_finished_after_its_partition_was_forgotten_is_ignored() -> None:
    flight: InFlight[str] = InFlight()
    old = flight.take("p", 0)
    flight.forget(["p"])
    new = flight.take("p", 0)  # the same offset again, from a recreated log
    flight.finish("p", 0, old)
    assert flight.commits() == {}
    flight.finish("p", 0, new)
    assert flight.commits() == {"p": 1}


@given(st.permutations(list(range(20))), st.integers(min_value=0, max_value=19))
def test_commits_cover_exactly_the_finished_prefix(order: list[int], stop: int) -> None:
    flight: InFlight[str] = InFlight()
    epochs = {o: flight.take("p", o) for o in range(20)}
    done = set(order[:stop])
    for offset in order[:stop]:
        flight.finish("p", offset, epochs[offset])
    prefix = next((o for o in range(20) if o not in done), 20)
    assert flight.commits().get("p", 0) == prefix
