"""Sweep: one `edgedl sweep` against the same cells as separate `edgedl advise` calls.

    python -m bench.bench_sweep [--spec SPEC.yaml]

Default SPEC: the five zoo models × 3 catalog devices (edge server edge_t4) × 2 links × 2
latency targets = 60 cells. Both arms run as a user would, in subprocesses, each with its
own fresh cache folder and runs database (so each measures the host calibration, the
profiles and the pruned models itself): the separate arm runs `edgedl advise ... --json`
once per cell, one after another; the sweep arm runs `edgedl sweep SPEC --json` once (local
Ray, this machine's cores, one timing slot). The table gives both wall times, their ratio
(goal ≤ 1/5) and whether each cell's recommended plan is the same in both arms; cells that
differ are listed with both arms' predicted_target figures of the two plans (measurements
are redone in each arm, so two plans within noise of each other can swap).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, md_table, publish

SPEC = {
    "name": "bench: 5 zoo models × 3 devices × 2 links × 2 latency targets",
    "models": [
        "digits_cnn",
        "resnet_style",
        "mobilenetv2_style",
        "transformer_encoder",
        "digits_multiexit",
    ],
    "targets": ["rpi4", "jetson_nano", "snapdragon_778g"],
    "edge": "edge_t4",
    "links": ["wifi", "4g"],
    "latency_ms": [10, 50],
}
CLI = [sys.executable, "-c", "from app.cli import main; main()"]


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "EDGEDL_CACHE_DIR": str(cache)}


def separate_arm(spec, work: Path) -> tuple[float, dict[tuple, dict]]:
    """Every cell as its own `edgedl advise` process; (wall s, {cell: its advice JSON})."""
    env = _env(work / "cache-separate")
    out: dict[tuple, dict] = {}
    t0 = time.perf_counter()
    for n, c in enumerate(spec.cells()):
        args = [*CLI, "advise", c.model, "--device", c.device, "--link", c.link]
        args += ["--latency-ms", f"{c.latency_ms:g}", "--runs", str(spec.runs), "--json"]
        args += ["--quiet", "--threads", str(spec.threads)]
        for flag, v in (("--edge", c.edge), ("--cloud", c.cloud)):
            if v:
                args += [flag, v]
        if c.accuracy_budget is not None:
            args += ["--accuracy-budget", f"{c.accuracy_budget:g}"]
        for p in spec.plans or []:
            args += ["--plan", p]
        r = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        if r.returncode not in (0, 1):
            raise RuntimeError(f"edgedl advise failed ({r.returncode}): {r.stderr.strip()}")
        out[_cell_id(c)] = json.loads(r.stdout)
        print(f"  separate {n + 1}/{len(spec.cells())}: {time.perf_counter() - t0:.0f} s")
    return time.perf_counter() - t0, out


def sweep_arm(spec_path: Path, work: Path) -> tuple[float, dict]:
    """One `edgedl sweep` process; (wall s, its JSON result)."""
    args = [*CLI, "sweep", str(spec_path), "--json", "--quiet"]
    args += ["--db", str(work / "sweep-runs.sqlite"), "--out", str(work / "sweep-out")]
    t0 = time.perf_counter()
    r = subprocess.run(
        args, cwd=ROOT, env=_env(work / "cache-sweep"), capture_output=True, text=True, timeout=7200
    )
    wall = time.perf_counter() - t0
    if r.returncode not in (0, 1):
        raise RuntimeError(f"edgedl sweep failed ({r.returncode}): {r.stderr.strip()}")
    return wall, json.loads(r.stdout)


def _cell_id(c) -> tuple:
    return (c.model, c.device, c.edge, c.cloud, c.link, float(c.latency_ms), c.accuracy_budget)


def _row_id(r: dict) -> tuple:
    return (
        r["model"],
        r["device"],
        r["edge"],
        r["cloud"],
        r["link"],
        float(r["latency_ms"]),
        r["accuracy_budget"],
    )


def _pred(advice: dict, plan_id: str | None) -> float | None:
    for p in advice["plans"]:
        if p["id"] == plan_id and p.get("predicted"):
            return p["predicted"]["ms"]
    return None


def gap(d: dict) -> float | None:
    """How far apart, in the separate arm's own run, the two arms' recommended plans are:
    |a - b| / min(a, b) of their predicted_target ms (None when one has no figure)."""
    f = d.get("separate_pred_ms") or {}
    a, b = f.get("separate plan"), f.get("sweep plan")
    if a is None or b is None or min(a, b) <= 0:
        return None
    return abs(a - b) / min(a, b)


def compare(separate: dict[tuple, dict], swept: dict) -> dict:
    rows = {_row_id(r): r for r in swept["rows"]}
    same, differ = 0, []
    for cid, adv in separate.items():
        row = rows.get(cid)
        if row is None:
            differ.append({"cell": cid, "separate": adv["recommended"], "sweep": "missing"})
            continue
        if row["recommended"] == adv["recommended"]:
            same += 1
            continue
        differ.append(
            {
                "cell": cid,
                "separate": adv["recommended"],
                "sweep": row["recommended"],
                "separate_pred_ms": {
                    "separate plan": _pred(adv, adv["recommended"]),
                    "sweep plan": _pred(adv, row["recommended"]),
                },
                "sweep_pred_ms": row["predicted_ms"],
            }
        )
    from advisor.validate.rank import NOISE_FLOOR

    for d in differ:
        d["gap"] = gap(d)
    within = sum(1 for d in differ if d["gap"] is not None and d["gap"] < NOISE_FLOOR)
    return {
        "cells": len(separate),
        "same": same,
        "differ": differ,
        "differ_within_noise": within,
        "noise_floor": NOISE_FLOOR,
    }


def run(spec_path: Path | None) -> dict:
    from advisor.sweep import load_spec

    with tempfile.TemporaryDirectory(prefix="edgedl-bench-sweep-") as tmp:
        work = Path(tmp)
        if spec_path is None:
            import yaml

            spec_path = work / "spec.yaml"
            spec_path.write_text(yaml.safe_dump(SPEC), encoding="utf-8")
        spec = load_spec(spec_path)
        print(f"== sweep arm: {len(spec.cells())} cells in one `edgedl sweep`", flush=True)
        sweep_s, swept = sweep_arm(spec_path, work)
        print(f"   {sweep_s:.0f} s", flush=True)
        print(f"== separate arm: {len(spec.cells())} `edgedl advise` calls", flush=True)
        separate_s, separate = separate_arm(spec, work)
        cmp = compare(separate, swept)
    cell_s = [
        r["timing_end"] - r["timing_start"]
        for r in swept["rows"]
        if r.get("timing_start") and r.get("timing_end")
    ]
    return {
        "sweep_cell_seconds": cell_s,
        "default_spec": spec_path is None,
        "spec": spec.model_dump(mode="json"),
        "cells": len(spec.cells()),
        "sweep_seconds": sweep_s,
        "separate_seconds": separate_s,
        "ratio": sweep_s / separate_s,
        "goal_ratio": 0.2,
        "goal_met": sweep_s / separate_s <= 0.2,
        "recommendations": cmp,
        "history_entry": {"ratio": sweep_s / separate_s, "cells": len(spec.cells())},
    }


def render(res: dict) -> str:
    cmp = res["recommendations"]
    body = md_table(
        ["figure", "value"],
        [
            ["cells (models × targets × links × latency targets)", res["cells"]],
            ["`edgedl sweep` (one process, local Ray), wall", f"{res['sweep_seconds']:.0f} s"],
            ["separate `edgedl advise` calls, wall", f"{res['separate_seconds']:.0f} s"],
            [
                "ratio sweep / separate (goal ≤ 0.20, for the 60-cell SPEC)",
                f"{res['ratio']:.2f} ({'met' if res['goal_met'] else 'missed'})",
            ],
            *(
                [
                    [
                        "sweep: seconds per cell inside the timing tasks, sum / median / max",
                        f"{sum(cs):.0f} / {sorted(cs)[len(cs) // 2]:.1f} / {max(cs):.1f}",
                    ]
                ]
                if (cs := res.get("sweep_cell_seconds"))
                else []
            ),
            [
                "cells whose recommended plan is the same in both arms",
                f"{cmp['same']} of {cmp['cells']}",
            ],
        ],
    )
    if cmp["differ"]:
        floor = cmp.get("noise_floor", 0.05)
        body += (
            f"\nCells that differ: {len(cmp['differ'])}, of which "
            f"{cmp.get('differ_within_noise', 0)} are ties within the noise floor "
            f"({floor * 100:.0f}%, advisor.rank.NOISE_FLOOR): in the separate arm's own run "
            "the two recommended plans' predicted_target figures (ms, end to end) are that "
            "close.\n\n"
        )
        body += md_table(
            [
                "cell",
                "separate recommends",
                "sweep recommends",
                "separate arm: its plan / sweep's plan (ms)",
                "gap",
            ],
            [
                [
                    " · ".join(str(x) for x in d["cell"] if x is not None),
                    d["separate"],
                    d["sweep"],
                    " / ".join(
                        f"{v:.4g}" if v is not None else "–"
                        for v in (d.get("separate_pred_ms") or {}).values()
                    ),
                    f"{d['gap'] * 100:.1f}%" if d.get("gap") is not None else "–",
                ]
                for d in cmp["differ"]
            ],
        )
    body += (
        "\nBoth arms measure on this host with a fresh cache each (wall clock, one run). The "
        "sweep runs each model's cells in one Ray task holding the node's timing slot, and "
        "within that task does the model's work once (advisor.measure.memo.MeasurementMemo): "
        "one load with its data and FP32 reference, one host profile, one ORT session, "
        "evaluation run and timing per byte-identical artifact, the planners' conversions, "
        "quantizations, sub-models and cuts once per distinct input; each cell still plans, "
        "predicts, judges and ranks its own plans from those real runs. The separate calls "
        "share only the on-disk caches (calibration, profiles, quantized and pruned models) and "
        "measure the rest again in each process. A model's first cell costs about the same in both "
        "arms; the saving is in its other cells, so the ratio falls with the cells per model "
        "(12 in the default SPEC; the 4-cell `--spec bench/sweep_small.yaml` has 2).\n"
    )
    return body


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", type=Path, help="another SPEC (default: the 60-cell one above)")
    ap.add_argument("--full", action="store_true", help="same as the default (the 60 cells)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    res = run(args.spec)
    module = "bench_sweep" + (f" --spec {args.spec}" if args.spec else "")
    return publish("sweep", module, args.full, res, t0, render)


if __name__ == "__main__":
    main()
