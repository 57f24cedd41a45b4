"""The measurement environment: CPU, ISA features, runtime versions and thread count.

A `Fingerprint` ties every measured figure to where it was measured; its `key()` is part of
every cache key, so a figure measured elsewhere (or at another thread count) is never reused.
"""

from __future__ import annotations

import hashlib
import platform
import sys
from pathlib import Path

import onnx
import onnxruntime as ort
from pydantic import BaseModel, ConfigDict

__all__ = ["Fingerprint", "fingerprint"]

# ISA features that change which ORT/MLAS kernels run (x86 `flags`, Arm `Features`)
_ISA_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16",
    "asimd", "asimdhp", "fphp", "asimddp", "i8mm", "bf16", "sve", "sve2",
)  # fmt: skip


class Fingerprint(BaseModel):
    """What a measurement depends on besides the model: CPU, ISA, runtime, threads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu_model: str
    physical_cores: int | None
    logical_cores: int | None
    isa_flags: list[str]
    ort_version: str
    onnx_version: str
    threads: int
    python: str
    platform: str

    def key(self) -> str:
        """A short stable hash of every field (cache key part)."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


def _cpuinfo() -> tuple[str | None, set[str]]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None, set()
    model: str | None = None
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model, flags


def fingerprint(threads: int = 1) -> Fingerprint:
    """This machine's measurement environment at `threads` intra-op threads."""
    import psutil

    model, flags = _cpuinfo()
    return Fingerprint(
        cpu_model=model or platform.processor() or platform.machine() or "unknown",
        physical_cores=psutil.cpu_count(logical=False),
        logical_cores=psutil.cpu_count(logical=True),
        isa_flags=[f for f in _ISA_FLAGS if f in flags],
        ort_version=ort.__version__,
        onnx_version=onnx.__version__,
        threads=threads,
        python=platform.python_version(),
        platform=f"{sys.platform}-{platform.machine()}",
    )
