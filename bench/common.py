"""Shared bench plumbing: timing statistics, environment line, and BENCHMARKS.md sections."""

from __future__ import annotations

import datetime as _dt
import json
import platform
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
RESULTS_DIR = ROOT / "bench" / "results"


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def median(values: list[float]) -> float:
    return statistics.median(values)


def environment() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return f"{cpu}, {os.cpu_count()} logical cores, Python {sys.version.split()[0]}, {platform.system()}"


def write_section(name: str, command: str, body_md: str, results: dict) -> None:
    """Replace (or append) the section `name` in BENCHMARKS.md and save results as JSON."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(results, indent=2, default=str))
    today = _dt.date.today().isoformat()
    section = (
        f"<!-- bench:{name}:start -->\n"
        f"Command: `{command}` · date {today} · {environment()}\n\n{body_md.rstrip()}\n"
        f"<!-- bench:{name}:end -->"
    )
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"<!-- bench:{name}:start -->.*?<!-- bench:{name}:end -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip() + f"\n\n## {name}\n\n{section}\n"
    BENCHMARKS_MD.write_text(text)
