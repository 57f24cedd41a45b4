"""Knowledge base: import time, search latency and full rebuild time.

python -m bench.bench_kb [--full]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import md_table, median, pct, write_section

QUERIES = [
    "partition latency mobile cloud",
    "early exit",
    "quantization",
    "pruning channels",
    "federated learning communication",
    "edge caching video",
    "Jetson",
    "model compression",
    "deep reinforcement learning offloading",
    "knowledge distillation",
    "NPU",
    "DAG min-cut",
]


def import_times(n: int) -> list[float]:
    """Wall time of `import kb` in a fresh interpreter, minus a bare interpreter's start."""

    def run(code: str) -> float:
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import time; t=time.perf_counter(); {code}; print(time.perf_counter()-t)",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return float(out.stdout.strip())

    return [run("import kb") for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--full", action="store_true", help="more repeats")
    args = ap.parse_args()
    n_import, n_search, n_rebuild = (20, 50, 5) if args.full else (7, 15, 3)

    imports = import_times(n_import)

    from kb import KnowledgeBase
    from kb.loader import load
    from kb.store import build

    with tempfile.TemporaryDirectory() as tmp:
        rebuilds = []
        for i in range(n_rebuild):
            t = time.perf_counter()
            data = load()
            build(data, Path(tmp) / f"kb{i}.sqlite")
            rebuilds.append(time.perf_counter() - t)
        base = KnowledgeBase.open(cache_dir=tmp)
        n_entries = len(base.entries)
        base.search("warm up")
        lat = []
        for _ in range(n_search):
            for q in QUERIES:
                t = time.perf_counter()
                base.search(q)
                lat.append((time.perf_counter() - t) * 1000)

    results = {
        "entries": n_entries,
        "import_s": {"median": median(imports), "p95": pct(imports, 95), "n": len(imports)},
        "search_ms": {"median": median(lat), "p95": pct(lat, 95), "n": len(lat)},
        "rebuild_s": {"median": median(rebuilds), "n": len(rebuilds)},
    }
    rows = [
        ["`import kb` (fresh interpreter)", f"{median(imports):.3f} s",
         f"{pct(imports, 95):.3f} s", len(imports), "< 0.5 s"],
        [f"`search()` over {len(QUERIES)} queries (warm database)", f"{median(lat):.2f} ms",
         f"{pct(lat, 95):.2f} ms", len(lat), "< 20 ms median"],
        ["full rebuild (parse + validate YAML, write SQLite + FTS5)",
         f"{median(rebuilds):.3f} s", "–", len(rebuilds), "–"],
    ]  # fmt: skip
    body = (
        f"All figures *measured* on this host; knowledge base of {n_entries} entries.\n\n"
        + md_table(["what", "median", "p95", "repeats", "target"], rows)
    )
    cmd = "python -m bench.bench_kb" + (" --full" if args.full else "")
    write_section("knowledge-base", cmd, body, results)
    print(body)


if __name__ == "__main__":
    main()
