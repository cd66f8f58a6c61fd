"""Reading a keyset page in `_id` windows, for stores that read a whole index range before they limit.

SecantusDB, the embedded store, gathers and decodes every document an index range matches and only then
applies `limit`: "the next 101 Observations after x" costs every Observation after x (4.3 s for page 1 of
100,000). A range bounded above costs only what lies in it, so a scan is read window by window:
`(after, b1)`, `[b1, b2)`, ... each bounded by `$lt`, until the page is full or the scan's end is reached,
where the last window is open. On MongoDB, which stops at the limit, a window costs a round trip.

Windows are sized in a number space over `_id`s (`position`): the first `DIGITS` characters, each read as
its rank in `ALPHABET` (the characters of FHIR ids and types, '/' and '.' and '-', in ASCII order), as a
base-65 number. The order of strings over that alphabet is kept (beyond `DIGITS` characters they tie).
Correctness never depends on the arithmetic: windows are contiguous, each bound is a string above the one
before, and the last window is open; the arithmetic only decides how many documents each window holds.

Where the ids lie is not known in advance (server-assigned ids are spread evenly, loaded ones often share
long prefixes), so an empty window is followed by one `GROW` times wider, a window that held some by one
sized for what is missing, and what a scan learned (`Hint`: where its matches begin, and a width that held
a page) sizes the first window of the next page or the next search of the same shape (`WindowHints`, one
per API process).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

Row = dict[str, Any]

ALPHABET = "-./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BASE = len(ALPHABET)
DIGITS = 32
SPACE = BASE**DIGITS
GROW = 4  # an empty window's successor is this much wider
FIRST_DEPTH = 3  # with nothing learned, a first window spans one value of the third character past its start
MAX_WINDOWS = 64  # then the rest of the scan is read in one open window


def position(key: str) -> int:
    """`key`'s place in the number space, never decreasing along the string order. A character outside
    the alphabet ends the digits: below the alphabet it counts as the end of the key, above or between its
    characters as the one below it followed by the highest digits."""
    n, filler = 0, 0
    for index, char in enumerate(key[:DIGITS]):
        rank = bisect_right(ALPHABET, char) - 1
        if rank < 0 or ALPHABET[rank] != char:
            n = n * BASE + max(rank, 0)
            filler = 0 if rank < 0 else BASE - 1
            return _pad(n, DIGITS - index - 1, filler)
        n = n * BASE + rank
    return _pad(n, DIGITS - min(len(key), DIGITS), filler)


def _pad(n: int, digits: int, filler: int) -> int:
    scale: int = BASE**digits
    return n * scale + filler * (scale - 1) // (BASE - 1)


def key_at(n: int) -> str:
    """The shortest string at position `n` (0 ≤ n < SPACE)."""
    chars = []
    for _ in range(DIGITS):
        n, digit = divmod(n, BASE)
        chars.append(ALPHABET[digit])
    return "".join(reversed(chars)).rstrip(ALPHABET[0])


def bound_after(low: str, width: int) -> str | None:
    """The exclusive upper bound of a window of `width` starting at `low`: a string above `low`, or None
    where the window would reach the end of the space (the caller reads an open window then)."""
    n = position(low) + max(1, width)
    if n >= SPACE:
        return None
    bound = key_at(n)
    return bound if bound > low else None


@dataclass(frozen=True)
class Hint:
    first: str | None  # the smallest `_id` the scan found above its floor
    width: int  # a window width that held about a page


class WindowHints:
    """What each scan shape learned last, for the next page and the next search; the `size` most recent."""

    def __init__(self, size: int = 1024) -> None:
        self._hints: OrderedDict[str, Hint] = OrderedDict()
        self._size = size

    def get(self, shape: str) -> Hint | None:
        hint = self._hints.get(shape)
        if hint is not None:
            self._hints.move_to_end(shape)
        return hint

    def put(self, shape: str, hint: Hint) -> None:
        self._hints[shape] = hint
        self._hints.move_to_end(shape)
        while len(self._hints) > self._size:
            self._hints.popitem(last=False)


@dataclass(frozen=True)
class Window:
    low: str  # `_id`s above it (or from it, when `inclusive`)
    inclusive: bool
    high: str | None  # `_id`s below it; None: up to the scan's end


class Windows:
    """The windows of one scan read from `start` (exclusive) up to `ceiling` (exclusive, None: no end),
    for a page of `want`. `next()` gives a window; report what it held with `held()`."""

    def __init__(self, start: str, ceiling: str | None, want: int, hint: Hint | None, from_floor: bool):
        self._low, self._inclusive, self._ceiling, self._want = start, False, ceiling, want
        self._reads, self._found, self._last = 0, 0, False
        self._first: str | None = None
        self._from_floor = from_floor
        self._known = hint
        self._page_start: str | None = None
        if hint is None:
            self._width = BASE ** max(0, DIGITS - len(start) - FIRST_DEPTH)
        else:
            self._width = max(1, hint.width)
            if from_floor and hint.first is not None and hint.first > start:
                # The first window reaches past where the matches began last time.
                self._width = max(1, position(hint.first) - position(start) + hint.width)

    def next(self) -> Window:
        self._reads += 1
        high = None if self._reads >= MAX_WINDOWS else bound_after(self._low, self._width)
        if high is not None and self._ceiling is not None and high >= self._ceiling:
            high = None
        if high is None:
            high = self._ceiling
        self._last = high == self._ceiling
        self._window = Window(self._low, self._inclusive, high)
        return self._window

    @property
    def last(self) -> bool:
        """Whether the window `next()` gave reaches the scan's end."""
        return self._last

    def held(self, ids: list[str], full: bool) -> None:
        """The window just read returned `ids` (in order); `full`: it may hold more (the limit was hit)."""
        if ids:
            if self._first is None:
                self._first = ids[0]
            if self._page_start is None:
                self._page_start = ids[0]
            self._found += len(ids)
        if full:
            # A page's worth in this window: read on after the last, at the width a page took.
            self._low, self._inclusive = ids[-1], False
            self._width = max(1, position(ids[-1]) - position(self._window.low))
            return
        assert self._window.high is not None, "the last window was read"
        self._low, self._inclusive = self._window.high, True
        if not ids:
            self._width *= GROW
        else:
            # Sized for what is missing at the density just seen (a quarter over), growing at most GROW.
            missing = max(1, self._want - self._found)
            wanted = self._width * missing * 5 // (4 * len(ids))
            self._width = min(self._width * GROW, max(self._width, wanted))

    def hint(self, last: str | None) -> Hint:
        """What to start from next time; `last`: the page's last `_id`."""
        width = self._width
        if self._page_start is not None and last is not None:
            width = max(1, (position(last) - position(self._page_start)) * 5 // 4)
        if self._known is not None:
            width = min(width, self._known.width * GROW)  # one page that crossed a gap does not set the pace
        known_first = self._known.first if self._known is not None else None
        return Hint(self._first if self._from_floor else known_first, width)


async def read_windows(
    read: Callable[[Window, int], Awaitable[list[Row]]],
    keep: Callable[[Row], bool],
    start: str,
    ceiling: str | None,
    want: int,
    hints: WindowHints,
    shape: str,
    floor: str,
) -> list[Row]:
    """Up to `want` rows that `keep` admits, in `_id` order, from `_id`s above `start` and below
    `ceiling`: `read(window, limit)` reads the first `limit` rows of one window in `_id` order. `floor`
    is the lowest `start` the scan has (its first page); `shape` keys what is learned in `hints`."""
    windows = Windows(start, ceiling, want, hints.get(shape), from_floor=start == floor)
    found: list[Row] = []
    while len(found) < want:
        batch = await read(windows.next(), want)
        found += [row for row in batch if keep(row)]
        full = len(batch) == want
        if windows.last and not full:
            break
        windows.held([row["_id"] for row in batch], full)
    hints.put(shape, windows.hint(found[min(want, len(found)) - 1]["_id"] if found else None))
    return found[:want]
