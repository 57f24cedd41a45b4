"""The one cache folder: profiles, calibrations and other measured results as JSON files,
and models derived from other models (quantized, pruned) as ONNX files.

`cache_dir()` is `$EDGEDL_CACHE_DIR` when set, else `~/.cache/edgedl`. Entries live in one
sub-folder per namespace (`profiles/`, `calibration/`, `quantized/`), one file per key. A file
that cannot be read or parsed counts as a miss, so a corrupt cache is re-measured (or
rebuilt), never trusted. Derived models are keyed by `content_key` over everything their
bytes depend on (the source model's bytes, the calibration data, the tool's version).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "cache_dir",
    "cache_path",
    "content_key",
    "read_json",
    "read_model",
    "write_json",
    "write_model",
]

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def cache_dir() -> Path:
    """The cache folder (created on first use)."""
    env = os.environ.get("EDGEDL_CACHE_DIR")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "edgedl"
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_path(namespace: str, key: str) -> Path:
    """Where the entry `key` of `namespace` lives; both are reduced to safe file-name chars."""
    return cache_dir() / _SAFE.sub("_", namespace) / f"{_SAFE.sub('_', key)}.json"


def read_json(namespace: str, key: str) -> dict[str, Any] | None:
    """The cached object, or None when absent or unreadable."""
    path = cache_path(namespace, key)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(namespace: str, key: str, data: dict[str, Any]) -> Path:
    """Store `data` atomically (write to a temp file, then rename) and return its path."""
    path = cache_path(namespace, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def content_key(*parts: str | bytes) -> str:
    """sha256 over `parts` (each length-prefixed, so ('ab', 'c') and ('a', 'bc') differ).

    >>> content_key("a", b"bc") == content_key("a", b"bc") != content_key("ab", b"c")
    True
    """
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def read_model(namespace: str, key: str) -> Any:
    """The cached onnx.ModelProto, or None when absent or unreadable."""
    import onnx

    path = cache_path(namespace, key).with_suffix(".onnx")
    try:
        return onnx.load(path)
    except Exception:  # noqa: BLE001 - any unreadable file is a miss
        return None


def write_model(namespace: str, key: str, model: Any) -> Path:
    """Store an onnx.ModelProto atomically (temp file, then rename) and return its path."""
    import onnx

    path = cache_path(namespace, key).with_suffix(".onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".onnx")
    os.close(fd)
    try:
        onnx.save(model, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
