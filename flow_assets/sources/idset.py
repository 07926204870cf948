"""The set of trade ids already kept in a month, for the duplicate-id policy without a hash set.

Exchange trade ids are dense integers (Binance ids are consecutive), so the set is a bitmap cut
into pages of ``2**PAGE_BITS`` ids, a page allocated when an id first falls in it: a
150M-trade month of consecutive ids costs about 19 MB, whatever the order of the rows. Sparse
ids cost one page (512 bytes) per id in the worst case.

String ids (Bybit's ``trdMatchID``, a UUID) are not dense: :class:`StringIds` keeps their exact
128-bit keys per UTC day, at most two days in memory and the others sorted on disk, and checks
the days against each other at the end a slice of the key space at a time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PAGE_BITS = 12
_PAGE_WORDS = (1 << PAGE_BITS) // 64
_LOW = (1 << PAGE_BITS) - 1


class SeenIds:
    """Trade ids seen so far; :meth:`add` marks new ones and tells which were new."""

    def __init__(self) -> None:
        self._keys = np.empty(0, dtype=np.int64)  # page numbers, sorted
        self._slots = np.empty(0, dtype=np.int64)  # slot of each page in ``_bits``
        self._bits = np.zeros((16, _PAGE_WORDS), dtype=np.int64)
        self._used = 0
        self._max: int | None = None  # the largest id seen

    @property
    def nbytes(self) -> int:
        """Memory held by the bitmap pages."""
        return int(self._bits.nbytes)

    def _page_slots(self, pages: np.ndarray) -> np.ndarray:
        """The slot of each page, allocating the pages not seen before."""
        index = np.searchsorted(self._keys, pages)
        known = index < self._keys.size
        known[known] = self._keys[index[known]] == pages[known]
        if not known.all():
            fresh = np.unique(pages[~known])
            if self._used + fresh.size > self._bits.shape[0]:
                rows = max(2 * self._bits.shape[0], self._used + fresh.size)
                grown = np.zeros((rows, _PAGE_WORDS), dtype=np.int64)
                grown[: self._used] = self._bits[: self._used]
                self._bits = grown
            slots = np.arange(self._used, self._used + fresh.size, dtype=np.int64)
            self._used += fresh.size
            keys = np.concatenate([self._keys, fresh])
            order = np.argsort(keys, kind="stable")
            self._keys = keys[order]
            self._slots = np.concatenate([self._slots, slots])[order]
            index = np.searchsorted(self._keys, pages)
        return self._slots[index]

    def add(self, ids: np.ndarray) -> np.ndarray:
        """Mark ``ids`` (int64, distinct) as seen; True where an id had not been seen before."""
        if ids.size == 0:
            return np.zeros(0, dtype=bool)
        pages = ids >> PAGE_BITS
        starts = np.flatnonzero(np.r_[True, pages[1:] != pages[:-1]])  # runs of one page
        slots = np.repeat(self._page_slots(pages[starts]), np.diff(np.r_[starts, pages.size]))
        flat = (slots << PAGE_BITS) | (ids & _LOW)
        words, bits = flat >> 6, flat & 63
        table = self._bits.reshape(-1)
        if self._max is not None and ids.min() <= self._max:
            new = ((table[words] >> bits) & 1) == 0
            words, masks = words[new], np.left_shift(1, bits[new])
        else:  # all above the largest id seen: all new
            new, masks = np.ones(ids.size, dtype=bool), np.left_shift(1, bits)
        self._max = max(int(ids.max()), self._max if self._max is not None else int(ids.max()))
        if words.size > 1 and (words[1:] >= words[:-1]).all():  # ascending ids: one OR per word
            starts = np.flatnonzero(np.r_[True, words[1:] != words[:-1]])
            table[words[starts]] |= np.bitwise_or.reduceat(masks, starts)
        else:
            np.bitwise_or.at(table, words, masks)
        return new


DAY_US = 86_400_000_000
MAX_RUNS_PER_DAY = 8  # sorted runs of a day's keys before they are merged into one
MAX_DAYS_IN_MEMORY = 2  # days whose keys are held; older ones wait on disk
PARTITIONS = 64  # slices of the key space the month-wide check reads at a time


def uuid_text(hi: int, lo: int) -> str:
    """A 128-bit key written as a UUID (how string ids such as Bybit's ``trdMatchID`` read)."""
    h = f"{hi:016x}{lo:016x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _sorted(keys: np.ndarray) -> np.ndarray:
    """``keys`` (2 x n uint64: the high halves, then the low ones) ordered by their high half;
    each row stays contiguous, as binary searches want it."""
    return keys[:, np.argsort(keys[0], kind="stable")]


def _member(run: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """True where (hi, lo) is in ``run`` (2 x n keys ordered by high half); exact: the keys
    sharing a high half are all compared. ``hi`` in ascending order searches fastest."""
    n = run.shape[1]
    at = np.minimum(np.searchsorted(run[0], hi), n - 1)
    same = run[0, at] == hi
    found = same & (run[1, at] == lo)
    shared = same & ~found & (at + 1 < n)
    shared[shared] = run[0, at[shared] + 1] == hi[shared]
    for i in np.flatnonzero(shared):  # several keys share the high half: rare
        j = int(at[i])
        stop = int(np.searchsorted(run[0], hi[i], "right"))
        found[i] = bool((run[1, j:stop] == lo[i]).any())
    return found


class _DayKeys:
    """The keys kept on one UTC day, as a few runs ordered by high half."""

    def __init__(self, keys: np.ndarray | None = None) -> None:
        self.runs: list[np.ndarray] = [] if keys is None or not keys.shape[1] else [keys]

    def add(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """Mark distinct keys; True where a key was new to the day."""
        order = np.argsort(hi, kind="stable")
        keys = np.stack([hi[order], lo[order]])
        new = np.ones(hi.size, dtype=bool)
        for run in self.runs:
            new &= ~_member(run, keys[0], keys[1])
        if new.any():
            self.runs.append(keys[:, new])  # still ordered by high half
        if len(self.runs) > MAX_RUNS_PER_DAY:
            self.runs = [self.merged()]
        kept = np.empty(hi.size, dtype=bool)
        kept[order] = new
        return kept

    def merged(self) -> np.ndarray:
        """Every key of the day, ordered by high half (2 x n uint64)."""
        if not self.runs:
            return np.empty((2, 0), dtype=np.uint64)
        return self.runs[0] if len(self.runs) == 1 else _sorted(np.concatenate(self.runs, axis=1))


# The first high half of each slice of the key space the month-wide check reads at a time.
_SLICE_STARTS = np.arange(PARTITIONS, dtype=np.uint64) * np.uint64((1 << 64) // PARTITIONS)


class StringIds:
    """Exact duplicate detection for string trade ids (128-bit keys) in bounded memory.

    Keys are kept per UTC day of their trade: a duplicate row repeats its trade's time, so the
    day's set decides it exactly. At most ``MAX_DAYS_IN_MEMORY`` days are in memory (16 bytes a
    key); the others wait on disk in ``folder`` (high halves, then low halves, ordered) and come
    back when a row of theirs arrives. :meth:`repeated_across_days` then reads from every day
    one slice of the key space at a time (``PARTITIONS`` slices, plain reads, no mapping) and
    finds ids kept on two different days.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.days: dict[int, _DayKeys] = {}  # in memory, least recently used first
        self.slices: dict[int, np.ndarray] = {}  # on disk: where each slice starts, and n

    def _path(self, day: int) -> Path:
        return self.folder / f"{day}.keys"

    def _day(self, day: int) -> _DayKeys:
        if day in self.days:
            self.days[day] = self.days.pop(day)  # most recently used
            return self.days[day]
        while len(self.days) >= MAX_DAYS_IN_MEMORY:
            self._save(next(iter(self.days)))
        keys = None
        if day in self.slices:
            keys = np.fromfile(self._path(day), dtype=np.uint64).reshape(2, -1)
        self.days[day] = _DayKeys(keys)
        return self.days[day]

    def _save(self, day: int) -> None:
        keys = self.days.pop(day).merged()
        keys.tofile(self._path(day))
        starts = np.searchsorted(keys[0], _SLICE_STARTS, "left")
        self.slices[day] = np.r_[starts, keys.shape[1]]

    def add(self, day: int, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """Mark the distinct keys (hi, lo) of trades of ``day`` (days since the epoch); True
        where a key had not been kept on that day before."""
        return self._day(day).add(hi.astype(np.uint64), lo.astype(np.uint64))

    def _read(self, day: int, part: int) -> np.ndarray:
        """Slice ``part`` of the keys of ``day`` from disk (2 x k)."""
        bounds = self.slices[day]
        first, last, size = int(bounds[part]), int(bounds[part + 1]), int(bounds[-1])
        path, count = self._path(day), last - first
        hi = np.fromfile(path, dtype=np.uint64, count=count, offset=8 * first)
        lo = np.fromfile(path, dtype=np.uint64, count=count, offset=8 * (size + first))
        return np.stack([hi, lo])

    def repeated_across_days(self, limit: int = 5) -> tuple[int, list[tuple[str, list[int]]]]:
        """How many keys were kept on more than one day, and up to ``limit`` of them with
        their days."""
        for day in list(self.days):
            self._save(day)
        days = sorted(self.slices)
        if len(days) < 2:
            return 0, []
        count, examples = 0, []
        for part in range(PARTITIONS):
            parts = [self._read(day, part) for day in days]
            labels = [
                np.full(p.shape[1], d, dtype=np.int64) for p, d in zip(parts, days, strict=True)
            ]
            found = _repeats(np.concatenate(parts, axis=1), np.concatenate(labels))
            count += len(found)
            examples += found[: limit - len(examples)]
        return count, examples


def _repeats(keys: np.ndarray, days: np.ndarray) -> list[tuple[str, list[int]]]:
    """The keys present on several days (each day's keys are distinct), with their days."""
    if keys.shape[1] < 2:
        return []
    order = np.lexsort((keys[1], keys[0]))
    keys, days = keys[:, order], days[order]
    same = (keys[0, 1:] == keys[0, :-1]) & (keys[1, 1:] == keys[1, :-1])
    found: dict[tuple[int, int], list[int]] = {}
    for i in np.flatnonzero(same):
        key = (int(keys[0, i]), int(keys[1, i]))
        found.setdefault(key, [int(days[i])]).append(int(days[i + 1]))
    return [(uuid_text(*key), sorted(set(d))) for key, d in found.items()]
