"""Prefetching keeps the source's order, ends when it ends, re-raises its errors, and stops its
thread when closed early (training sources are endless)."""

import itertools
import threading

import pytest

from mmsae.data.prefetch import Prefetch


def test_same_items_in_the_same_order():
    with Prefetch(iter(range(100)), depth=3) as p:
        assert list(p) == list(range(100))
        with pytest.raises(StopIteration):
            next(p)


def test_errors_reach_the_consumer_after_the_items_before_them():
    def source():
        yield 1
        yield 2
        raise ValueError("bad shard")

    with Prefetch(source()) as p:
        assert [next(p), next(p)] == [1, 2]
        with pytest.raises(ValueError, match="bad shard"):
            next(p)


def test_close_stops_an_endless_source():
    p = Prefetch(itertools.count(), depth=2)
    assert [next(p) for _ in range(5)] == [0, 1, 2, 3, 4]
    p.close()
    assert not any(t.name == "mmsae-prefetch" and t.is_alive() for t in threading.enumerate())
