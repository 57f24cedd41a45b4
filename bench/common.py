"""Shared bench plumbing: timing statistics, environment line, and BENCHMARKS.md sections.

Besides `write_section`, the advisor benches share `zoo_advice` (one advise() run per zoo
model and request, memoised for the process, so `bench.run_all` measures each model once and
the prediction, compression and scale tables read the same run; the prediction bench adds
repeats through `advise_zoo`) and `fresh_cache` (a private cache folder, so profiles are
measured in this run, never read from an earlier one).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import json
import math
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def loglog_slope(sizes: list[float], times: list[float]) -> float:
    """Least-squares slope of log(time) against log(size): ~1 linear, ~2 quadratic.

    >>> round(loglog_slope([10, 100, 1000], [2, 200, 20000]), 2)
    2.0
    """
    pts = [(math.log(s), math.log(t)) for s, t in zip(sizes, times, strict=True) if s > 0 and t > 0]
    if len(pts) < 2:
        return float("nan")
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else float("nan")


def growth_label(slope: float) -> str:
    """A plain-words reading of a log-log slope."""
    if math.isnan(slope):
        return "n/a"
    if slope < 0.3:
        return "flat (constant overhead dominates)"
    if slope < 1.15:
        return "linear"
    if slope < 1.5:
        return "n log n to n^1.5"
    if slope < 2.4:
        return "quadratic"
    return "worse than quadratic"


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table; cells are str()-ed."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def environment() -> str:
    """One line: CPU, cores, ISA flags that pick ORT kernels, ORT/onnx/Python versions."""
    try:
        from advisor.measure.environment import fingerprint

        fp = fingerprint(1)
        isa = ", ".join(fp.isa_flags) or "none detected"
        return (
            f"{fp.cpu_model}, {fp.physical_cores} physical / {fp.logical_cores} logical cores, "
            f"ISA {isa}, onnxruntime {fp.ort_version}, onnx {fp.onnx_version}, "
            f"Python {fp.python}, {fp.platform}"
        )
    except Exception:  # noqa: BLE001 - the kb bench must work without the advisor's deps
        cpu = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        return (
            f"{cpu}, {os.cpu_count()} logical cores, Python {sys.version.split()[0]}, "
            f"{platform.system()}"
        )


def load_average() -> str:
    """The 1/5/15-minute load average, for context on a shared machine."""
    try:
        return "load average " + " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except (OSError, AttributeError):
        return "load average n/a"


def write_section(name: str, command: str, body_md: str, results: dict) -> None:
    """Replace (or append) the section `name` in BENCHMARKS.md and save results as JSON."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    results = {
        "command": command,
        "date": _dt.date.today().isoformat(),
        "environment": environment(),
        **results,
    }
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)  # a file name without spaces
    (RESULTS_DIR / f"{slug}.json").write_text(json.dumps(results, indent=2, default=str))
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


@contextlib.contextmanager
def fresh_cache() -> Iterator[Path]:
    """Point the advisor's cache ($EDGEDL_CACHE_DIR) at a new temporary folder, then restore.

    Nested use keeps the outer folder, so `run_all` measures the host calibration once.
    """
    if os.environ.get("EDGEDL_BENCH_CACHE"):
        yield Path(os.environ["EDGEDL_BENCH_CACHE"])
        return
    old = os.environ.get("EDGEDL_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="edgedl-bench-") as tmp:
        os.environ["EDGEDL_CACHE_DIR"] = os.environ["EDGEDL_BENCH_CACHE"] = tmp
        try:
            yield Path(tmp)
        finally:
            del os.environ["EDGEDL_BENCH_CACHE"]
            if old is None:
                os.environ.pop("EDGEDL_CACHE_DIR", None)
            else:
                os.environ["EDGEDL_CACHE_DIR"] = old
            zoo_advice.cache_clear()  # its artifacts lived in the folder just removed


def host_calibration_seconds() -> float:
    """Calibrate this host (once per cache folder); seconds the micro-benchmark took."""
    from advisor.measure.calibrate import calibrate

    return calibrate(threads=1).seconds


# one request shape for the prediction, compression and scale tables: every tier is this
# host, so every compute stage is both predicted and measured here (prediction_error set)
ZOO_LINK = "ethernet"


@functools.lru_cache(maxsize=16)
def zoo_advice(
    model_id: str, device: str = "host", plans: tuple[str, ...] | None = None, runs: int = 20
):
    """advise() on a zoo model with edge and cloud = `host` over ethernet; memoised.

    Returns (Advice, wall seconds). Artifacts go into the current cache folder.
    """
    return advise_zoo(model_id, device, plans, runs)


def advise_zoo(
    model_id: str,
    device: str = "host",
    plans: tuple[str, ...] | None = None,
    runs: int = 20,
    repeat: int = 0,
):
    """zoo_advice without the memo: repeat > 0 runs advise() again with a fresh profile (the
    cached profiles of the current cache folder are dropped first)."""
    import shutil

    from advisor import AdviceRequest, advise
    from advisor.cache import cache_dir

    if repeat:
        shutil.rmtree(cache_dir() / "profiles", ignore_errors=True)
    tag = f"{model_id}-{device}-{len(plans or ())}-r{runs}" + (f"-rep{repeat}" if repeat else "")
    req = AdviceRequest(
        model=model_id,
        device=device,
        edge="host",
        cloud="host",
        link=ZOO_LINK,
        cloud_link=ZOO_LINK,
        latency_ms=10_000,
        plans=list(plans) if plans else None,
        runs=runs,
        out_dir=str(cache_dir() / "bench-artifacts" / tag),
    )
    t = time.perf_counter()
    advice = advise(req)
    return advice, time.perf_counter() - t


def quiet_libraries() -> None:
    """Silence the quantizer's and torch exporter's chatter so bench output stays readable."""
    import logging
    import warnings

    logging.getLogger().setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


HISTORY = RESULTS_DIR / "history.jsonl"


def record_history(section: str, entry: dict, keep: int = 8) -> list[dict]:
    """Append this run's headline figures to bench/results/history.jsonl and return the
    section's last `keep` entries (oldest first): on a noisy host one run's verdict is one
    draw, and the table says so by showing the recent ones next to it."""
    import subprocess

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], capture_output=True, text=True, cwd=ROOT, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD")
    code = ("advisor", "bench", ":(exclude)bench/results")  # results are written by this run
    if commit and git("status", "--porcelain", "--untracked-files=no", "--", *code):
        commit += "-dirty"  # the code that ran is not that commit's
    row = {"section": section, "date": _dt.date.today().isoformat(), "commit": commit, **entry}
    HISTORY.parent.mkdir(parents=True, exist_ok=True)
    with HISTORY.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, sort_keys=True) + "\n")
    rows = []
    for line in HISTORY.read_text(encoding="utf-8").splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue  # a damaged line: skip it, keep the rest
        if isinstance(item, dict) and item.get("section") == section:
            rows.append(item)
    return rows[-keep:]


def publish(section: str, module: str, full: bool, res: dict, t0: float, render) -> dict:
    """Stamp wall time and load on `res`, write its section of BENCHMARKS.md, print it.

    A bench that sets res["history_entry"] (its headline figures) gets res["history"]: the
    recent runs of the same section, recorded in bench/results/history.jsonl."""
    import time

    if "history_entry" in res:
        res["history"] = record_history(section, {**res.pop("history_entry"), "full": full})
    res["wall_seconds"] = time.perf_counter() - t0
    res["load"] = load_average()
    body = render(res) + f"\n\nWall time {res['wall_seconds']:.0f} s; {res['load']}.\n"
    write_section(section, f"python -m bench.{module}" + (" --full" if full else ""), body, res)
    print(body)
    return res
