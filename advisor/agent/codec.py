"""Tensor bodies on the wire: ``.npz`` (several named tensors) or ``.npy`` (one tensor).

Binary NumPy formats rather than JSON lists: exact dtypes, no float round-trip, and a
decode that is a copy, not a parse. Decoding never unpickles (``allow_pickle=False``) and
checks the uncompressed sizes a zip declares before inflating anything, so a small
compressed body cannot expand into a large allocation.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping

import numpy as np

from advisor.errors import InputDataError

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK"
#: key used for the tensor of a bare ``.npy`` body (the caller maps it to the only input)
SINGLE = ""


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

    Raises InputDataError when the body is neither, holds pickled objects, or would inflate
    to more than ``max_bytes``.
    """
    if data.startswith(NPY_MAGIC):
        try:
            return {SINGLE: np.load(io.BytesIO(data), allow_pickle=False)}
        except ValueError as exc:
            raise InputDataError(f"the .npy body cannot be read: {exc}") from exc
    if not data.startswith(ZIP_MAGIC):
        raise InputDataError(
            "the body is not an .npz or .npy file; send numpy.savez(...) bytes with the "
            "input tensors by name"
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except zipfile.BadZipFile as exc:
        raise InputDataError(f"the .npz body is not a valid zip archive: {exc}") from exc
    total = sum(m.file_size for m in members)
    if total > max_bytes:
        raise InputDataError(
            f"the .npz body would expand to {total} bytes, over this server's limit of "
            f"{max_bytes} bytes"
        )
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, KeyError) as exc:
        raise InputDataError(f"the .npz body cannot be read: {exc}") from exc
