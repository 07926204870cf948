"""The set of trade ids already kept in a month, for the duplicate-id policy without a hash set.

Exchange trade ids are dense integers (Binance ids are consecutive), so the set is a bitmap cut
into pages of ``2**PAGE_BITS`` ids, a page allocated when an id first falls in it: a
150M-trade month of consecutive ids costs about 19 MB, whatever the order of the rows. Sparse
ids cost one page (512 bytes) per id in the worst case.
"""

from __future__ import annotations

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
