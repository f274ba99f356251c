"""Read the next batches in a background thread while the current one trains.

Reading a batch (positioned reads, float16 → float32) takes ~4 ms of a ~100 ms CPU step and
releases the GIL for most of it, as do the step's PyTorch and numba kernels, so a thread hides
it; on GPU it hides the whole read. The order of batches is the iterator's: prefetching never
changes what is trained.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_END = object()


class Prefetch(Iterator[T]):
    """Iterate `source` `depth` items ahead in a daemon thread; errors re-raise in the consumer."""

    def __init__(self, source: Iterator[T], depth: int = 1):
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(source,), daemon=True, name="mmsae-prefetch")
        self._thread.start()

    def _fill(self, source: Iterator[T]) -> None:
        try:
            for item in source:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(exc)

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __next__(self) -> T:
        item = self._q.get()
        if item is _END:
            self._q.put(_END)  # stays exhausted
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        """Stop the thread (it ends at its next item)."""
        self._stop.set()
        while True:
            try:
                self._q.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=5)

    def __enter__(self) -> Prefetch[T]:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
