"""The compiled row gather of `EmbeddingStore.get` (loaded on first use by `store._row_reader`).
Module-level so numba's on-disk cache is hit: it compiles once per machine, not once per process.

One `pread` per row (per run of rows consecutive in the file and in the batch) in a loop that
holds no GIL: the same reads as the Python loop it replaces, but a batch is gathered while the
training step runs in the other thread (on a GPU the Python loop's GIL time, not the reads, set the
speed)."""

import numba
from numba import types

# pread(2), called by its symbol name. The buffer is passed as an address (a uintp): every 64-bit
# ABI passes it exactly as the `void *` that pread declares.
_pread = types.ExternalFunction("pread", types.intp(types.intc, types.uintp, types.uintp, types.int64))

RETRIES = 8
"""A read that fails (-1: interrupted, or an I/O error on a network file system) is tried again
this many times before the gather reports it."""


def _read_rows(fd, base, rows, dest, row_bytes, out):  # pragma: no cover - compiled
    """Row rows[i] of the file (at byte base + rows[i]·row_bytes) into row dest[i] of `out` (a flat
    uint8 view of the [N, D] batch). Returns -1 when every row was read; i ≥ 0 when the file ends
    before the run starting at row i is filled; −2 − i when reading that run keeps failing."""
    address = out.ctypes.data
    n = rows.shape[0]
    i = 0
    while i < n:
        j = i + 1
        while j < n and rows[j] == rows[j - 1] + 1 and dest[j] == dest[j - 1] + 1:
            j += 1
        want = (j - i) * row_bytes
        done = 0
        failed = 0
        while done < want:  # a read may return fewer bytes than asked: go on from there
            got = _pread(fd, address + dest[i] * row_bytes + done, want - done, base + rows[i] * row_bytes + done)
            if got == 0:
                return i
            if got < 0:
                failed += 1
                if failed > RETRIES:
                    return -2 - i
                continue
            done += got
        i = j
    return -1


try:
    read_rows = numba.njit(nogil=True, cache=True)(_read_rows)
except RuntimeError:  # no cache folder can be written (a read-only install, no writable home): compile per process
    read_rows = numba.njit(nogil=True)(_read_rows)
