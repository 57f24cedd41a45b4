"""What an .npz archive holds, read from its array headers before any array is loaded.

`np.load` allocates what a header claims: a 200-byte member whose header says 10^13
float32 values asks for 36 TiB and dies with MemoryError. `array_headers` reads each
member's header only (no pickles: object arrays are refused) and checks that the bytes the
header claims are the bytes the member holds, and that they fit in memory.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from advisor.errors import InputDataError

__all__ = ["ArrayHeader", "array_headers", "npy_header"]


@dataclass(frozen=True)
class ArrayHeader:
    shape: tuple[int, ...]
    dtype: np.dtype
    nbytes: int


def npy_header(fh: IO[bytes]) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, header length in bytes) of the .npy stream at `fh`, reading the header
    only; numpy's ValueError/EOFError/OSError pass through for the caller to word."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    return tuple(shape), dtype, fh.tell()


def _header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, file: str) -> ArrayHeader:
    name = info.filename.removesuffix(".npy")
    try:
        with zf.open(info) as fh:
            shape, dtype, header_len = npy_header(fh)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputDataError(
            f"{file}: array {name!r} is not a valid .npy member ({exc}); save the data with "
            "numpy.savez"
        ) from None
    if dtype.hasobject:
        raise InputDataError(
            f"{file}: array {name!r} holds Python objects (a pickle), which are never loaded; "
            "save numeric arrays only"
        )
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes != info.file_size - header_len:
        raise InputDataError(
            f"{file}: array {name!r} claims shape {tuple(shape)} ({dtype}, {nbytes:,} bytes) but "
            f"holds {max(0, info.file_size - header_len):,} bytes of data; the file is corrupt "
            "or forged: save it again with numpy.savez"
        )
    return ArrayHeader(tuple(int(d) for d in shape), dtype, nbytes)


def array_headers(path: str | Path, max_bytes: int | None = None) -> dict[str, ArrayHeader]:
    """Shape, dtype and size of every array in the .npz at `path`, without loading any.

    Raises InputDataError for a missing file, a file that is not an .npz archive, a member
    that is not an .npy array, an object (pickled) array, a header that does not match the
    data's size, or arrays larger together than `max_bytes`.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "d.npz")
    >>> np.savez(p, x=np.zeros((5, 3), np.float32))
    >>> array_headers(p)["x"].shape
    (5, 3)
    """
    path = Path(path)
    if path.is_dir():
        raise InputDataError(f"{path} is a folder; give the .npz file inside it")
    if not path.is_file():
        raise InputDataError(f"input data file not found: {path}")
    if not zipfile.is_zipfile(path):
        raise InputDataError(
            f"{path.name} is not an .npz archive; save the inputs with numpy.savez(path, "
            "<input name>=array, ..., y=labels)"
        )
    try:
        with zipfile.ZipFile(path) as zf:
            members = [i for i in zf.infolist() if not i.is_dir()]
            headers = {i.filename.removesuffix(".npy"): _header(zf, i, path.name) for i in members}
    except (zipfile.BadZipFile, OSError, NotImplementedError) as exc:
        raise InputDataError(f"{path.name} is not a valid .npz file: {exc}") from None
    total = sum(h.nbytes for h in headers.values())
    if max_bytes is not None and total > max_bytes:
        big = max(headers, key=lambda k: headers[k].nbytes)
        from advisor.graph.footprint import human_bytes

        raise InputDataError(
            f"{path.name} holds {human_bytes(total)} of arrays (largest: {big!r} "
            f"{headers[big].shape}), more than the {human_bytes(max_bytes)} of memory it may "
            "use; give fewer samples (or raise --max-memory)"
        )
    return headers
