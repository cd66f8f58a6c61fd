"""Reading a page in `_id` windows: the windows lose nothing and repeat nothing whatever the ids look like,
and once a scan has learned where its ids lie, a page reads about a page. Pure logic: a sorted list stands
in for the index range, and what a window "costs" is how many ids lie in it (what SecantusDB decodes)."""

from __future__ import annotations

import bisect
import random
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from setaccounts_api.rest.windows import (
    ALPHABET,
    Hint,
    Row,
    Window,
    WindowHints,
    bound_after,
    position,
    raised,
    read_windows,
)

FLOOR, CEILING = "Observation/", "Observation0"
id_chars = st.text(alphabet=ALPHABET.replace("/", ""), min_size=1, max_size=40)


class Range:
    """Sorted `_id`s read like an index range that decodes everything in a window before its limit."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = sorted(set(ids))
        self.decoded = 0
        self.reads = 0

    async def read(self, window: Window, limit: int) -> list[Row]:
        side = "left" if window.inclusive else "right"
        low = (bisect.bisect_left if side == "left" else bisect.bisect_right)(self.ids, window.low)
        high = len(self.ids) if window.high is None else bisect.bisect_left(self.ids, window.high)
        self.decoded += max(0, high - low)
        self.reads += 1
        return [{"_id": key} for key in self.ids[low:high][:limit]]


async def page_of(store: Range, start: str, hints: WindowHints) -> list[Row]:
    """A page of 100 and the look-ahead row, as the search route reads it."""
    return await read_windows(store.read, lambda row: True, start, CEILING, 101, hints, "Observation", FLOOR)


async def pages(store: Range, want: int, hints: WindowHints, keep=lambda row: True) -> list[list[str]]:
    """Every page of the scan, each from the last one's last `_id` (the `next` link's cursor)."""
    found, start = [], FLOOR
    while True:
        page = await read_windows(store.read, keep, start, CEILING, want + 1, hints, "Observation", FLOOR)
        found.append([row["_id"] for row in page[:want]])
        if len(page) <= want:
            return found
        start = page[want - 1]["_id"]


@given(st.text(max_size=40), st.integers(min_value=1, max_value=10**40))
def test_a_bound_is_above_its_start(low: str, width: int) -> None:
    bound = bound_after(low, width)
    assert bound is None or bound > low


@given(st.lists(st.text(max_size=12), min_size=2, max_size=2))
def test_positions_keep_the_string_order(keys: list[str]) -> None:
    low, high = sorted(keys)
    assert position(low) <= position(high)


@settings(max_examples=150, deadline=None)
@given(
    ids=st.one_of(
        st.lists(id_chars, max_size=300),
        st.lists(st.integers(0, 10**6), max_size=300).map(lambda ns: [f"p{n % 7}-obs-{n:06d}" for n in ns]),
        st.lists(st.sampled_from(["a", "a-", "a.", "a0", "aa", "b", "z" * 40]), max_size=7),
    ),
    want=st.integers(1, 40),
    dropped=st.integers(1, 5),
)
async def test_pages_walk_every_id_once_in_order(ids: list[str], want: int, dropped: int) -> None:
    """Every page, with and without what earlier searches learned, and with rows the caller rejects."""
    store, hints = Range([FLOOR + i for i in ids]), WindowHints()
    keep = lambda row: hash(row["_id"]) % (dropped + 1) != 0 if dropped > 1 else True  # noqa: E731
    expected = [key for key in store.ids if keep({"_id": key})]

    for _ in range(2):  # the second walk starts from the hints the first left
        walked = await pages(store, want, hints, keep)
        assert [key for page in walked for key in page] == expected
        assert all(len(page) == want for page in walked[:-1])


async def test_a_page_of_spread_ids_reads_about_a_page() -> None:
    """Server-assigned ids (UUIDs): after the first page, a page of 100 decodes about two pages on average;
    a page that crosses the gap between '9' and 'a' reads more (the windows grow into it)."""
    rng = random.Random(7)
    store, hints = (
        Range([FLOOR + str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(50_000)]),
        WindowHints(),
    )
    first = await read_windows(store.read, lambda row: True, FLOOR, CEILING, 101, hints, "Observation", FLOOR)
    assert store.decoded < len(store.ids) // 4, store.decoded  # not all 50,000, as an open range

    start, costs = first[99]["_id"], []
    for _ in range(40):
        store.decoded = 0
        page = await read_windows(
            store.read, lambda row: True, start, CEILING, 101, hints, "Observation", FLOOR
        )
        costs.append(store.decoded)
        start = page[99]["_id"]
    assert sum(costs) / len(costs) < 300 and max(costs) < 2_500, costs


async def test_loaded_ids_that_share_long_prefixes_are_read_about_a_page_at_a_time() -> None:
    """Ids like `p0042-obs-000123`, clustered far from the floor: the first search may read them all; the
    pages after it read about two pages (the look-ahead row included), also where a patient's ids end and
    the next one's begin (the windows jump to where the next run would start, `raised`); a cursor from
    elsewhere, before the gap between `p0009` and `p0010`, too; and the next search's first page starts
    where the ids begin."""
    ids = [f"{FLOOR}p{p:04d}-obs-{i:06d}" for p in range(50) for i in range(1_000)]
    store, hints, start, costs = Range(ids), WindowHints(), FLOOR, []
    for _ in range(40):
        store.decoded = 0
        page = await page_of(store, start, hints)
        costs.append(store.decoded)
        start = page[99]["_id"]
    later = costs[1:]
    assert sum(later) / len(later) < 300 and max(later) < 600, costs

    store.decoded = 0
    jumped = await page_of(store, f"{FLOOR}p0009-obs-000950", hints)
    assert [row["_id"] for row in jumped][48:50] == [f"{FLOOR}p0009-obs-000999", f"{FLOOR}p0010-obs-000000"]
    assert store.decoded < 600, store.decoded

    store.decoded = 0
    again = await page_of(store, FLOOR, hints)
    assert [row["_id"] for row in again] == store.ids[:101]
    assert store.decoded < 600, store.decoded


def test_the_next_run_begins_where_a_position_is_raised_and_the_rest_is_lowest() -> None:
    seen = [
        "".join(sorted(set(chars))) for chars in zip(*["p0049-obs-000998", "p0000-obs-000000"], strict=True)
    ]
    last = "p0049-obs-000998"

    assert raised(last, last.index("4"), seen) == "p0050-obs-000000"  # a digit may become any digit
    assert raised(last, 8, seen) == "p0049-obt-000000"  # a letter any letter of its case
    assert raised(last, 5, seen) is None  # '-' was all this position held
    assert raised(last, 40, seen) is None  # nothing known that far


class Kept:
    """Hints kept outside the process, as `rest.stored_hints` keeps them in the store; counts the writes."""

    def __init__(self) -> None:
        self.hints: dict[str, Hint] = {}
        self.saves = 0

    async def load(self, shape: str) -> Hint | None:
        return self.hints.get(shape)

    async def save(self, shape: str, hint: Hint) -> bool:
        self.hints[shape] = hint
        self.saves += 1
        return True


async def test_paging_through_a_scan_writes_its_hint_a_few_times_not_once_a_page() -> None:
    """Walking all 500 pages of 50,000 loaded ids, and then of 50,000 server-assigned ones, and searching
    20 times more, writes each scan's hint a few times; a process starting afresh from what was kept reads
    its first page where the ids begin, at about the cost of a page."""
    rng = random.Random(3)
    for ids in (
        [f"{FLOOR}p{p:04d}-obs-{i:06d}" for p in range(50) for i in range(1_000)],
        [FLOOR + str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(50_000)],
    ):
        store, kept = Range(ids), Kept()
        hints = WindowHints(records=kept)
        walked = await pages(store, 100, hints)
        for _ in range(20):
            await page_of(store, FLOOR, hints)
        assert len(walked) == 500 and 1 <= kept.saves <= 3, kept.saves

        store.decoded = 0
        first = await page_of(store, FLOOR, WindowHints(records=kept))
        assert [row["_id"] for row in first] == store.ids[:101]
        assert store.decoded < 600, store.decoded
        store.decoded = 0
        await page_of(store, FLOOR, WindowHints())
        assert store.decoded > 5_000, store.decoded  # what the first page costs knowing nothing
