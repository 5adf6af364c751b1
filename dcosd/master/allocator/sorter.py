"""Weighted DRF sorter, kept sorted incrementally.

A client (a role, or a framework within a role) is ordered by

    (dominant share / weight, number of allocations, name)

as Mesos' DRFSorter does: the dominant share is the largest fraction of any
scalar it holds out of the cluster total; the allocation count breaks ties so
equal clients take turns; the name makes the order total and deterministic.

The sorted list is a plain list of key tuples maintained with bisect: an
allocation changes one client's key, so repositioning it costs O(log n) to find
plus a memmove, instead of re-sorting per pick. When the cluster total changes
(an agent comes or goes) every share changes and the list is rebuilt once,
lazily, at the next read.
"""

from __future__ import annotations

from bisect import bisect_left, insort

Key = tuple[float, int, str]


class Sorter:
    __slots__ = ("total", "excluded", "alloc", "weight", "count", "keys", "_order", "_stale", "_inv")

    def __init__(self, total: dict[str, int], excluded: frozenset[str] = frozenset()) -> None:
        # ``total`` is shared with the allocator and mutated in place; call ``invalidate``.
        self.total = total
        self.excluded = excluded
        self.alloc: dict[str, dict[str, int]] = {}
        self.weight: dict[str, float] = {}
        self.count: dict[str, int] = {}
        self.keys: dict[str, Key] = {}
        self._order: list[Key] = []
        self._stale = False
        self._inv: dict[str, float] = {}  # 1/total per counted resource: a share is a multiply
        self._refresh_inv()

    def _refresh_inv(self) -> None:
        self._inv = {k: 1.0 / t for k, t in self.total.items() if t > 0 and k not in self.excluded}

    # -- membership ---------------------------------------------------------------------
    def add(self, name: str, weight: float = 1.0) -> None:
        if name in self.keys:
            return
        self.alloc[name] = {}
        self.weight[name] = weight
        self.count[name] = 0
        key = (0.0, 0, name)
        self.keys[name] = key
        if not self._stale:
            insort(self._order, key)

    def remove(self, name: str) -> None:
        key = self.keys.pop(name, None)
        if key is None:
            return
        del self.alloc[name], self.weight[name], self.count[name]
        if not self._stale:
            del self._order[bisect_left(self._order, key)]

    def __contains__(self, name: str) -> bool:
        return name in self.keys

    def set_weight(self, name: str, weight: float) -> None:
        if name in self.weight:
            self.weight[name] = weight
            self._reposition(name)

    def invalidate(self) -> None:
        """The cluster total changed: every share is stale."""
        self._refresh_inv()
        self._stale = True

    # -- shares -------------------------------------------------------------------------
    def share(self, name: str) -> float:
        """Dominant share (unweighted) of ``name``."""
        inv = self._inv
        best = 0.0
        for k, v in self.alloc[name].items():
            f = inv.get(k)
            if f is not None:
                f *= v
                if f > best:
                    best = f
        return best

    def _key(self, name: str) -> Key:
        return (self.share(name) / self.weight[name], self.count[name], name)

    def _reposition(self, name: str) -> None:
        new = self._key(name)
        old = self.keys[name]
        self.keys[name] = new
        if self._stale or new == old:
            return
        order = self._order
        del order[bisect_left(order, old)]
        insort(order, new)

    def allocated(self, name: str, scalars: dict[str, int]) -> None:
        # The hot path of a cycle: add, recompute the share and move the key, inline.
        a = self.alloc[name]
        for k, v in scalars.items():
            a[k] = a.get(k, 0) + v
        inv = self._inv
        best = 0.0
        for k, v in a.items():
            f = inv.get(k)
            if f is not None:
                f *= v
                if f > best:
                    best = f
        c = self.count[name] + 1
        self.count[name] = c
        new = (best / self.weight[name], c, name)
        old = self.keys[name]
        self.keys[name] = new
        if self._stale:
            return
        order = self._order
        i = bisect_left(order, old)
        del order[i]
        insort(order, new, lo=i)  # the key only grows: search from where it was

    def unallocated(self, name: str, scalars: dict[str, int]) -> None:
        a = self.alloc[name]
        for k, v in scalars.items():
            left = a.get(k, 0) - v
            if left < 0:
                raise AssertionError(f"{name}: {k} allocation would go negative")
            if left:
                a[k] = left
            else:
                a.pop(k, None)
        self._reposition(name)

    def order(self) -> list[Key]:
        """The live sorted list of keys (``key[2]`` is the name). Do not mutate it."""
        if self._stale:
            self.keys = {n: self._key(n) for n in self.keys}
            self._order = sorted(self.keys.values())
            self._stale = False
        return self._order

    def names(self) -> list[str]:
        return [k[2] for k in self.order()]
