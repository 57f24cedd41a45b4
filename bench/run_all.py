"""Run every benchmark at its default size, in sequence, and rewrite BENCHMARKS.md.

    python -m bench.run_all [--full]        (`make bench`)

The advisor benches run in this process with one private cache folder, so the host is
calibrated once and each zoo model is advised once: the prediction, compression and scale
tables read the same advise() runs. The knowledge-base bench runs in a fresh interpreter
(it times `import kb`); the sweep bench runs its own `edgedl` processes with their own
caches (its headline is read back from bench/results/sweep.json). A summary section with
the headline figures and each bench's wall time is written last.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import time

from bench.common import (
    BENCHMARKS_MD,
    RESULTS_DIR,
    ROOT,
    fresh_cache,
    host_calibration_seconds,
    load_average,
    md_table,
    write_section,
)

IN_PROCESS = (
    "bench_plan_quality",
    "bench_prediction",
    "bench_compression",
    "bench_scale",
    "bench_target",
    "bench_speed",
)
SUBPROCESS = ("bench_kb", "bench_sweep")
BENCHES = IN_PROCESS + SUBPROCESS


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:.1f}%"


def headline(results: dict[str, dict]) -> list[list[str]]:
    """(figure, value, target, verdict) rows from the benches' result dicts."""
    rows = []
    pq = results.get("bench_plan_quality")
    if pq:
        s = pq["summary"]
        rows.append(
            [
                "advisor regret, median (max) over model × link cases",
                f"{_pct(s['advisor']['median'])} ({_pct(s['advisor']['max'])})",
                "≤ 5%",
                "met" if s["median_target_met"] else "missed",
            ]
        )
        rows.append(
            [
                "Neurosurgeon-style regret, median (max)",
                f"{_pct(s['neurosurgeon']['median'])} ({_pct(s['neurosurgeon']['max'])})",
                "–",
                "–",
            ]
        )
        rows.append(
            [
                "cases where the advisor is worse than Neurosurgeon",
                str(len(s["advisor_worse_than_neurosurgeon"])),
                "0",
                "met" if s["never_worse_than_neurosurgeon"] else "missed",
            ]
        )
    pe = results.get("bench_prediction")
    if pe:
        pl, st, before = pe["plan_error"], pe["stage_error"], pe["plan_error_before"]
        reps = pe.get("repeats", 1)
        rows.append(
            [
                "prediction error per validated plan (compute stages summed; median over "
                f"{reps} advise() runs): median / p90",
                f"{_pct(pl['median'])} / {_pct(pl['p90'])} (n = {pl['n']})",
                "≤ 10% / ≤ 25%",
                "met" if pe["median_target_met"] and pe["p90_target_met"] else "missed",
            ]
        )
        one = pe.get("plan_error_single_run")
        if one and one["n"]:
            rows.append(
                [
                    "the same, each single advise() run's own error, pooled",
                    f"{_pct(one['median'])} / {_pct(one['p90'])} (n = {one['n']})",
                    "–",
                    "–",
                ]
            )
        rows.append(
            [
                "prediction error per compute stage: median / p90",
                f"{_pct(st['median'])} / {_pct(st['p90'])} (n = {st['n']})",
                "–",
                "–",
            ]
        )
        rows.append(
            [
                "before (not the product): unscaled BASIC per-node sum, per plan",
                f"{_pct(before['median'])} / {_pct(before['p90'])}",
                "–",
                "–",
            ]
        )
    sp = results.get("bench_speed")
    if sp:
        rows += _speed_rows(sp)
    sc = results.get("bench_scale")
    if sc:
        n = sc["budget_nodes"]
        t = sc["synthetic"]["timings"]["dag"].get(n) or sc["synthetic"]["timings"]["dag"].get(
            str(n)
        )
        if t:
            worst = max(t[k] for k in ("partition.chain", "partition.dag", "partition.three_tier"))
            rows.append(
                [
                    f"all three partition planners together on a {n:,}-node DAG",
                    f"{t['all partition planners']:.2f} s",
                    "–",
                    "–",
                ]
            )
            rows.append(
                [
                    f"slowest partition planner on a {n:,}-node DAG",
                    f"{worst:.2f} s",
                    "< 1 s",
                    "met" if worst < 1 else "missed",
                ]
            )
    tg = results.get("bench_target")
    if tg:
        for key, label, goal in (
            ("a", "target profile, 1 → 2 threads here: median |error|", 0.10),
            ("b", "target profile, another machine (agent): median |error|", 0.15),
            ("b_on_target", "profile on target (agent), per-node sum: median |error|", 0.10),
            ("c", "catalog priors, held-out published rows: median |error|", 0.35),
        ):
            s = tg[key]
            rows.append([label, _pct(s["median"]), f"≤ {goal:.0%}",
                         "met" if s["median"] <= goal else "missed"])  # fmt: skip
    sw = results.get("bench_sweep")
    if sw:
        rec = sw["recommendations"]
        rows.append(
            [
                f"`edgedl sweep` vs {sw['cells']} separate `edgedl advise` calls: wall ratio",
                f"{sw['ratio']:.2f} ({sw['sweep_seconds']:.0f} s vs "
                f"{sw['separate_seconds']:.0f} s)",
                "≤ 0.20",
                "met" if sw["goal_met"] else "missed",
            ]
        )
        rows.append(
            [
                "sweep cells recommending the same plan as the separate calls",
                f"{rec['same']} of {rec['cells']}",
                "–",
                "–",
            ]
        )
    return rows


def _speed_rows(sp: dict) -> list[list[str]]:
    """The advise-speed headlines: ResNet-50 class wall and memory, slowest zoo model, same
    decisions (bench.bench_speed)."""
    rows, v = [], sp["verdicts"]

    def verdict(ok: bool | None) -> str:
        return "–" if ok is None else ("met" if ok else "missed")

    big = [r for r in sp["speed"] if r["model"] == "resnet50_class"]
    if big:
        new = big[0]["new"]
        rows.append(
            [
                "advise wall time / peak RSS, ResNet-50-class model (vs previous defaults)",
                f"{new['wall_s']:.1f} s / {new['peak_mb']:.0f} MB ({big[0]['wall_ratio']:.2f}×)",
                "≤ 20 s / ≤ 1 GB",
                verdict(v["big_seconds"] and v["big_memory"]),
            ]
        )
    zoo = [r for r in sp["speed"] if r["model"] != "resnet50_class"]
    if zoo:
        worst = max(zoo, key=lambda r: r["new"]["wall_s"])
        rows.append(
            [
                "advise wall time, slowest zoo model",
                f"{worst['new']['wall_s']:.1f} s ({worst['model']})",
                "≤ 3 s",
                verdict(v["zoo_seconds"]),
            ]
        )
    if sp["decisions"]:
        same = sum(r["same"] for r in sp["decisions"])
        rows.append(
            [
                "same decisions as the previous defaults (cases)",
                f"{same} of {len(sp['decisions'])}",
                "≥ 95%",
                verdict(v["same_decisions"]),
            ]
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="every bench at its --full size")
    args = ap.parse_args(argv)
    flag = ["--full"] if args.full else []
    t_all = time.perf_counter()
    walls: dict[str, float] = {}
    results: dict[str, dict] = {}
    with fresh_cache():
        cal = host_calibration_seconds()
        for name in IN_PROCESS:
            print(f"== {name}", flush=True)
            t = time.perf_counter()
            results[name] = importlib.import_module(f"bench.{name}").main(flag)
            walls[name] = time.perf_counter() - t
    for name in SUBPROCESS:
        print(f"== {name}", flush=True)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", f"bench.{name}", *flag], cwd=ROOT, check=True)
        walls[name] = time.perf_counter() - t
        if name == "bench_sweep":
            results[name] = json.loads((RESULTS_DIR / "sweep.json").read_text())
    total = time.perf_counter() - t_all
    body = md_table(["headline", "value", "target", "verdict"], headline(results))
    body += "\n" + md_table(
        ["bench", "wall time"],
        [[f"`python -m bench.{n}`", f"{w:.0f} s"] for n, w in walls.items()]
        + [
            ["host calibration (once, shared)", f"{cal:.1f} s"],
            ["**total**", f"**{total:.0f} s**"],
        ],
    )
    body += f"\n{load_average()} at the end of the run.\n"
    write_section(
        "summary",
        "python -m bench.run_all" + (" --full" if args.full else ""),
        body,
        {"walls": walls, "total_seconds": total, "headline": headline(results)},
    )
    print(body)
    print(f"BENCHMARKS.md written: {BENCHMARKS_MD}  (total {total:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
