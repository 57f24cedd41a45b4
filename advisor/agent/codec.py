"""Tensor bodies on the wire: ``.npz`` (several named tensors) or ``.npy`` (one tensor).

Binary NumPy formats rather than JSON lists: exact dtypes, no float round-trip, and a
decode that is a copy, not a parse. Decoding never unpickles (``allow_pickle=False``) and
checks the uncompressed sizes a zip declares, and each array header's shape x itemsize,
before inflating or allocating anything, so a small body cannot claim a large allocation.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Mapping
from typing import IO

import numpy as np

from advisor.errors import InputDataError
from advisor.graph.npzfile import npy_header

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK"
#: most arrays one .npz body may hold
MAX_ARRAYS = 1024
#: key used for the tensor of a bare ``.npy`` body (the caller maps it to the only input)
SINGLE = ""


class TooLargeError(InputDataError):
    """A body or its arrays would need more bytes than the agent's limit (HTTP 413)."""


def encode_tensors(tensors: Mapping[str, np.ndarray]) -> bytes:
    """Serialize named tensors as an uncompressed ``.npz`` (tensor names kept verbatim).

    Written with zipfile exactly as ``np.savez`` lays it out, because ``np.savez``'s own
    keyword arguments (``file``, ``allow_pickle``) would swallow tensors with those names.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, value in tensors.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(value), allow_pickle=False)
    return buf.getvalue()


def decode_tensors(data: bytes, *, max_bytes: int) -> dict[str, np.ndarray]:
    """Read an ``.npz`` or ``.npy`` body; a bare ``.npy`` comes back under the key ``""``.

    Every array's header (shape x itemsize) is read and checked before any array is
    allocated, so a header that claims 10^13 elements costs nothing. Raises TooLargeError
    when the arrays would need more than ``max_bytes`` together, and InputDataError when the
    body is neither format, holds pickled objects, or its headers disagree with its data.
    """
    if data.startswith(NPY_MAGIC):
        fp = io.BytesIO(data)
        nbytes = _checked_header(fp, len(data), "the .npy body", max_bytes)
        return {SINGLE: _read(io.BytesIO(data), "the .npy body", nbytes)}
    if not data.startswith(ZIP_MAGIC):
        raise InputDataError(
            "the body is not an .npz or .npy file; send numpy.savez(...) bytes with the "
            "input tensors by name"
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return _read_npz(archive, max_bytes)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, RuntimeError) as exc:
        # RuntimeError: an encrypted member; OSError/EOFError: a truncated or corrupt stream
        raise InputDataError(f"the .npz body is not a valid zip archive: {exc}") from exc


def _read_npz(archive: zipfile.ZipFile, max_bytes: int) -> dict[str, np.ndarray]:
    members = archive.infolist()
    if len(members) > MAX_ARRAYS:
        raise InputDataError(
            f"the .npz body holds {len(members)} arrays; this agent takes at most {MAX_ARRAYS}"
        )
    total = sum(m.file_size for m in members)
    if total > max_bytes:
        raise TooLargeError(
            f"the .npz body would expand to {total} bytes, over this server's limit of "
            f"{max_bytes} bytes"
        )
    sizes = {}
    for member in members:
        if not member.filename.endswith(".npy"):
            raise InputDataError(
                f"the .npz member {member.filename!r} is not an .npy array; send "
                "numpy.savez(...) bytes"
            )
        with archive.open(member) as fp:
            where = f"array {member.filename[:-4]!r} in the .npz body"
            sizes[member.filename] = _checked_header(fp, member.file_size, where, max_bytes)
    claimed = sum(sizes.values())
    if claimed > max_bytes:
        raise TooLargeError(
            f"the .npz body's arrays declare {claimed} bytes together, over this agent's "
            f"limit of {max_bytes} bytes; send fewer or smaller tensors"
        )
    tensors = {}
    for member in members:
        with archive.open(member) as fp:
            name = member.filename[:-4]
            tensors[name] = _read(fp, f"array {name!r} in the .npz body", sizes[member.filename])
    return tensors


def _checked_header(fp: IO[bytes], size: int, where: str, max_bytes: int) -> int:
    """Read one .npy header from ``fp`` (``size`` bytes in all); its data's bytes.

    The header's claim is checked against ``max_bytes`` and against the bytes that follow
    it, before anything is allocated."""
    try:
        shape, dtype, header_len = npy_header(fp)
    except (ValueError, EOFError, OSError, SyntaxError, TypeError) as exc:
        raise InputDataError(f"the header of {where} cannot be read: {exc}") from exc
    if dtype.hasobject:
        raise InputDataError(
            f"{where} holds Python objects, which would need unpickling (allow_pickle=False "
            "here); send numeric arrays"
        )
    if any(int(d) < 0 for d in shape):
        raise InputDataError(f"{where} declares a negative size in its shape {shape}")
    nbytes = math.prod(int(d) for d in shape) * dtype.itemsize
    if nbytes > max_bytes:
        dims = "x".join(str(d) for d in shape) or "scalar"
        raise TooLargeError(
            f"{where} declares shape {dims} {dtype} = {nbytes} bytes, over this agent's "
            f"limit of {max_bytes} bytes; send smaller tensors"
        )
    if header_len + nbytes != size:
        raise InputDataError(
            f"{where} declares {nbytes} bytes of data but holds {size - header_len}; the "
            "header does not match the data (write it with numpy.save or numpy.savez)"
        )
    return nbytes


def _read(fp: IO[bytes], where: str, nbytes: int) -> np.ndarray:
    """Read an array whose header _checked_header passed (so allocation is bounded)."""
    try:
        return np.lib.format.read_array(fp, allow_pickle=False)
    except (ValueError, EOFError, OSError, zipfile.BadZipFile) as exc:
        raise InputDataError(f"{where} ({nbytes} bytes) cannot be read: {exc}") from exc
