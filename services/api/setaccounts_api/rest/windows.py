"""Reading a keyset page in `_id` windows, for stores that read a whole index range before they limit
(`StoreProfile.limit_pushdown` False; `rest.readers` picks this only then).

Such a store gathers and decodes every document an index range matches and only then applies `limit`: "the
next 101 Observations after x" costs every Observation after x (4.3 s for page 1 of 100,000 on the
development store). A range bounded above costs only what lies in it, so a scan is read window by window:
`(after, b1)`, `[b1, b2)`, ... each bounded by `$lt`, until the page is full or the scan's end is reached,
where the last window is open. On a store that stops at the limit, a window would only cost round trips.

Windows are sized in a number space over `_id`s (`position`): the first `DIGITS` characters, each read as
its rank in `ALPHABET` (the characters of FHIR ids and types, '/' and '.' and '-', in ASCII order), as a
base-65 number. The order of strings over that alphabet is kept (beyond `DIGITS` characters they tie).
Correctness never depends on the arithmetic: windows are contiguous, each bound is a string above the one
before, and the last window is open; the arithmetic only decides how many documents each window holds.

Where the ids lie is not known in advance (server-assigned ids are spread evenly, loaded ones come in runs
that share long prefixes, `p0042-obs-000000` to `p0042-obs-000998`), so windows are sized from what the
ids showed: a window that held some is followed by one sized for what is missing at the pace the ids kept;
an empty one by a window reaching a page past where the next run would begin if it parts from the last id
one position further up (`raised`: after `p0042-obs-000998`, `p0042-obs-001000`, then ..., then
`p0043-obs-000000`), or, knowing nothing, `GROW` times wider. What a scan learned (`Hint`: where its
matches begin, the width a page takes, the characters seen at each position) starts the next page and the
next search of the same shape (`WindowHints`, one per API process, kept in the store too by
`rest.stored_hints`: the store cannot say where a range's ids begin without decoding the range, so only a
shape's first search ever pays for finding out, not the first after each start of each replica).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Row = dict[str, Any]

ALPHABET = "-./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BASE = len(ALPHABET)
DIGITS = 32
SPACE = BASE**DIGITS
GROW = 4  # with no run of ids to jump to, an empty window is followed by one this much wider
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


CLASSES = ("0123456789", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _widened(seen: str) -> str:
    """The characters a position may hold, sorted: those seen, and every digit or letter of a case where
    one was seen (a counter seen at `0` may be at `1` next)."""
    wide = set(seen)
    for members in CLASSES:
        if not wide.isdisjoint(members):
            wide.update(members)
    return "".join(sorted(wide))


def raised(key: str, index: int, seen: Sequence[str]) -> str | None:
    """`key` with the character at `index` raised to the next one its position may hold and every later
    position at the lowest seen there: where the next run of ids would begin if it parts from `key` first
    at `index` (`p0049-obs-000998` raised at the `4`: `p0050-obs-000000`). `seen`: per position, the
    characters seen there, sorted; a position may hold those, and every digit or letter of a case seen
    there. None when the position can hold nothing higher (or nothing is known of it)."""
    if index >= len(seen) or index >= len(key):
        return None
    wide = _widened(seen[index])
    higher = bisect_right(wide, key[index])
    if higher == len(wide):
        return None
    tail = []
    for later in seen[index + 1 : len(key)]:
        if not later:
            break
        tail.append(later[0])
    return key[:index] + wide[higher] + "".join(tail)


@dataclass(frozen=True)
class Hint:
    first: str | None  # the smallest `_id` the scan found above its floor
    width: int  # the width a page takes, at the pace its ids kept
    chars: tuple[str, ...] = ()  # position i: the characters seen there in the scan's ids, sorted


class HintRecords(Protocol):
    """Where hints outlive the process (`rest.stored_hints`): loaded once per shape, saved on change."""

    async def load(self, shape: str) -> Hint | None: ...

    async def save(self, shape: str, hint: Hint) -> bool: ...


def worth_saving(saved: Hint | None, hint: Hint) -> bool:
    """Whether `hint` tells the next process more than `saved`: matches that begin elsewhere, a page width
    off by more than `GROW`, or characters of a new kind at some position (`_widened`)."""
    if saved is None:
        return True
    if hint.first is not None and hint.first != saved.first:
        return True
    if max(hint.width, saved.width) > GROW * min(hint.width, saved.width):
        return True
    if len(hint.chars) > len(saved.chars):
        return True
    return any(_widened(new) != _widened(old) for new, old in zip(hint.chars, saved.chars, strict=False))


class WindowHints:
    """What each scan shape learned last, for the next page and the next search; the `size` most recent in
    the process, and, with `records`, every shape's in the store (read on a shape's first search in the
    process, written when `worth_saving`)."""

    def __init__(self, size: int = 1024, records: HintRecords | None = None) -> None:
        self._hints: OrderedDict[str, tuple[Hint | None, Hint | None]] = OrderedDict()  # (now, saved)
        self._size = size
        self._records = records

    async def get(self, shape: str) -> Hint | None:
        entry = self._hints.get(shape)
        if entry is None:
            saved = None if self._records is None else await self._records.load(shape)
            entry = self._hints[shape] = (saved, saved)
            self._trim()
        self._hints.move_to_end(shape)
        return entry[0]

    async def put(self, shape: str, hint: Hint, lasting: bool) -> None:
        """`lasting`: learned by a scan's first page, the page a new process reads first. The pages after it
        refine the hint a little each (a page's width varies with the gaps between ids); that stays in the
        process, not written at every page."""
        _, saved = self._hints.get(shape, (None, None))
        records = self._records
        if records is not None and lasting and worth_saving(saved, hint) and await records.save(shape, hint):
            saved = hint
        self._hints[shape] = (hint, saved)
        self._hints.move_to_end(shape)
        self._trim()

    def _trim(self) -> None:
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
        self._chars = [set(seen) for seen in hint.chars] if hint is not None else []
        self._next_high: str | None = None
        self._last_id, self._level = start, len(start)  # the last id seen, the position raised last
        self._paced: int | None = None
        if hint is None:
            self._width = BASE ** max(0, DIGITS - len(start) - FIRST_DEPTH)
        else:
            self._width = max(1, hint.width)
            if from_floor and hint.first is not None and hint.first > start:
                # The first window reaches past where the matches began last time.
                self._width = max(1, position(hint.first) - position(start) + hint.width)
        self._page_width = self._width if hint is None else max(1, hint.width)

    def next(self) -> Window:
        self._reads += 1
        high = None if self._reads >= MAX_WINDOWS else bound_after(self._low, self._width)
        if self._next_high is not None and high is not None:
            high = self._next_high  # a page past where the next run of ids probably begins
        self._next_high = None
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
            self._found += len(ids)
            self._learn(ids)
            if len(ids) > 1:  # the width a page takes at the density of these ids (a gap between runs aside)
                span = position(ids[-1]) - position(ids[0])
                paced = max(1, span * (self._want - 1) // (len(ids) - 1))
                self._paced = paced if self._paced is None else min(self._paced, paced)
        if full:
            # A page's worth in this window: read on after the last, at the width a page took.
            self._low, self._inclusive = ids[-1], False
            self._width = max(1, position(ids[-1]) - position(self._window.low))
            return
        assert self._window.high is not None, "the last window was read"
        self._low, self._inclusive = self._window.high, True
        if not ids:
            # Nothing here: the next window reaches a page past where the next run of ids would begin if
            # it parts from the last id one position further up (`raised`); knowing none, just wider.
            self._width *= GROW
            self._next_high = self._next_run()
        else:
            self._last_id, self._level = ids[-1], len(ids[-1])
            # Sized for what is missing (a quarter over): at the pace the ids themselves kept where known
            # (a window that reached over a gap says little), else at the window's density, growing at
            # most GROW.
            missing = max(1, self._want - self._found)
            if self._paced is not None:
                self._width = max(1, self._paced * missing * 5 // (4 * self._want))
            else:
                wanted = self._width * missing * 5 // (4 * len(ids))
                self._width = min(self._width * GROW, max(self._width, wanted))

    def _next_run(self) -> str | None:
        chars = self._sorted_chars()
        while self._level > 0:
            self._level -= 1
            start = raised(self._last_id, self._level, chars)
            if start is not None and start > self._low:
                return bound_after(start, self._page_width)
        return None

    def _learn(self, ids: list[str]) -> None:
        for key in ids:
            for index, char in enumerate(key):
                if index == len(self._chars):
                    self._chars.append(set())
                self._chars[index].add(char)

    def _sorted_chars(self) -> tuple[str, ...]:
        return tuple("".join(sorted(seen)) for seen in self._chars)

    def hint(self) -> Hint:
        """What to start from next time: where the ids began, the width a page takes, the characters seen."""
        width = self._width if self._paced is None else self._paced * 5 // 4
        known_first = self._known.first if self._known is not None else None
        return Hint(self._first if self._from_floor else known_first, max(1, width), self._sorted_chars())


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
    from_floor = start == floor
    windows = Windows(start, ceiling, want, await hints.get(shape), from_floor)
    found: list[Row] = []
    while len(found) < want:
        batch = await read(windows.next(), want)
        found += [row for row in batch if keep(row)]
        full = len(batch) == want
        if windows.last and not full:
            break
        windows.held([row["_id"] for row in batch], full)
    await hints.put(shape, windows.hint(), lasting=from_floor)
    return found[:want]
