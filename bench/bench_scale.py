"""Scale: planner time against graph size, and advise() wall time per zoo model by stage.

    python -m bench.bench_scale [--full]

Planner time is measured on synthetic chain and DAG models (bench.synthetic, onnx.helper)
of 10 to 5,000 nodes, given per-node costs (seeded random device times; server = device / 10,
edge = device / 5, cloud = device / 20; 4G device link, ethernet edge-cloud link) — no
profiling, so only the planners are timed:

- enumerate cuts: `ModelGraph.cuts()` (advisor.graph.cuts.enumerate_cuts);
- chain scan: `prefix_costs` + `best` (advisor.plans.costs), the Neurosurgeon-style scan;
- DAG min-cut: `min_cut_head` (advisor.plans.partition_dag), networkx max-flow;
- planner calls, end to end as advise() makes them (scan + sub-model extraction):
  partition.chain, partition.dag and partition.three_tier (two-cut scan over every pair).

Loading (shape inference, FLOPs) is timed too, for context. The growth is read from the
least-squares slope of log(time) against log(nodes) over sizes ≥ 100.
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path

import numpy as np

from bench.common import (
    fresh_cache,
    growth_label,
    host_calibration_seconds,
    load_average,
    loglog_slope,
    md_table,
    median,
    quiet_libraries,
    write_section,
    zoo_advice,
)
from bench.synthetic import dag_model

STEPS = (
    "load",
    "enumerate cuts",
    "chain scan",
    "DAG min-cut",
    "partition.chain",
    "partition.dag",
    "partition.three_tier",
)
PLANNER_STEPS = ("partition.chain", "partition.dag", "partition.three_tier")
ROWS = (*STEPS, "all partition planners")
BUDGET_S, BUDGET_NODES = 1.0, 2000


def node_costs(graph, seed: int = 0) -> dict[str, dict[str, float]]:
    """Seeded per-node ms on each tier (device, server, edge, cloud)."""
    rng = np.random.default_rng(seed)
    dev = {n.name: float(rng.uniform(0.01, 0.2)) for n in graph.nodes}
    return {
        "device": dev,
        "server": {k: v / 10 for k, v in dev.items()},
        "edge": {k: v / 5 for k, v in dev.items()},
        "cloud": {k: v / 20 for k, v in dev.items()},
    }


def _context(graph, costs, work_dir: Path):
    from advisor.measure.calibrate import calibrate
    from advisor.plans import PlanContext
    from advisor.targets.catalog import get_link, load_catalog

    cat = load_catalog()
    dev, edge, cloud = (cat.target(t) for t in ("rpi4", "edge_t4", "cloud_a100"))
    return PlanContext(
        graph=graph, device=dev, server=edge, server_tier="edge", edge=edge, cloud=cloud,
        link=get_link("4g", cat), cloud_link=get_link("ethernet", cat),
        device_ms=costs["device"], server_ms=costs["server"], edge_ms=costs["edge"],
        cloud_ms=costs["cloud"], calib_inputs=[], work_dir=work_dir,
        calibration=calibrate(threads=1),
    )  # fmt: skip


def _time_once(model, work_dir: Path) -> dict[str, float]:
    """Seconds of each step, once, on a fresh load of `model`."""
    from advisor.model import load_model
    from advisor.plans.costs import best, prefix_costs
    from advisor.plans.partition_chain import chain
    from advisor.plans.partition_dag import dag, min_cut_head
    from advisor.plans.partition_three_tier import three_tier

    out: dict[str, float] = {}
    t = time.perf_counter()
    g = load_model(model)
    out["load"] = time.perf_counter() - t
    costs = node_costs(g)
    ctx = _context(g, costs, work_dir)
    up = 1 / (ctx.link.up_mbps * 1e6 / 8 / 1e3)
    down = 1 / (ctx.link.down_mbps * 1e6 / 8 / 1e3)
    steps = (
        ("enumerate cuts", g.cuts),
        (
            "chain scan",
            lambda: best(
                prefix_costs(g, costs["device"], costs["server"], ctx.link), single_only=True
            ),
        ),
        ("DAG min-cut", lambda: min_cut_head(g, costs["device"], costs["server"], up, down)),
        ("partition.chain", lambda: chain(ctx)),
        ("partition.dag", lambda: dag(ctx)),
        ("partition.three_tier", lambda: three_tier(ctx)),
    )
    for step, fn in steps:
        gc.collect()  # garbage left by the previous step is not this step's cost
        t = time.perf_counter()
        fn()
        out[step] = time.perf_counter() - t
    return out


def time_planners(model, repeats: int, work_dir: Path) -> dict[str, float]:
    """Median seconds of each step over `repeats` on one model."""
    runs = [_time_once(model, work_dir) for _ in range(repeats)]
    return {s: median([r[s] for r in runs]) for s in STEPS}


def run_synthetic(sizes: list[int], repeats: int, work_dir: Path) -> dict:
    from bench.synthetic import chain_model, dag_model

    out: dict = {"chain": {}, "dag": {}}
    for kind, build in (("chain", chain_model), ("dag", dag_model)):
        for n in sizes:
            out[kind][n] = time_planners(build(n), repeats, work_dir)
            out[kind][n]["all partition planners"] = sum(out[kind][n][s] for s in PLANNER_STEPS)
    growth = {}
    for kind in out:
        ns = [n for n in sizes if n >= 100]
        growth[kind] = {s: loglog_slope(ns, [out[kind][n][s] for n in ns]) for s in ROWS}
    return {"timings": out, "growth": growth}


def hotspots(model, work_dir: Path, top: int = 4) -> dict[str, list[tuple[str, float, float]]]:
    """Per partition planner: the `top` functions by self time under cProfile."""
    import cProfile
    import pstats

    from advisor.model import load_model
    from advisor.plans.partition_chain import chain
    from advisor.plans.partition_dag import dag
    from advisor.plans.partition_three_tier import three_tier

    g = load_model(model)
    ctx = _context(g, node_costs(g), work_dir)
    out = {}
    for name, fn in (
        ("partition.chain", chain),
        ("partition.dag", dag),
        ("partition.three_tier", three_tier),
    ):
        prof = cProfile.Profile()
        prof.runcall(fn, ctx)
        st = pstats.Stats(prof)
        total = st.total_tt  # type: ignore[attr-defined]
        rows = sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:top]  # type: ignore[attr-defined]
        out[name] = [
            (f"{Path(f).name}:{line}({func})", tt, tt / total)
            for (f, line, func), (_, _, tt, _, _) in rows
        ]
    return out


def run_zoo(models: list[str], runs: int = 20) -> dict:
    res = {}
    for m in models:
        advice, wall = zoo_advice(m, runs=runs)
        res[m] = {
            "wall_s": wall,
            "stages": dict(advice.stage_seconds),
            "nodes": advice.model.nodes,
            "plans": len(advice.plans),
        }
    return res


def _s(x: float) -> str:
    return f"{x * 1e3:.1f} ms" if x < 1 else f"{x:.2f} s"


def render(res: dict) -> str:
    syn, zoo = res["synthetic"], res["zoo"]
    sizes = res["sizes"]
    out = [
        "Planner times **measured** on this host (wall clock, median of "
        f"{res['repeats']} repeat(s) per size, garbage collected before each step), "
        "given synthetic per-node costs (no profiling). `load` = load_model (shape "
        "inference, FLOPs) for context; the planner calls include sub-model extraction.",
        "",
    ]
    for kind in ("chain", "dag"):
        rows = []
        for s in ROWS:
            slope = syn["growth"][kind][s]
            rows.append(
                [
                    s,
                    *[_s(syn["timings"][kind][n][s]) for n in sizes],
                    f"{slope:.2f}",
                    growth_label(slope),
                ]
            )
        out.append(f"**{kind.upper()} models** (nodes across):\n")
        out.append(md_table(["step", *[f"{n:,}" for n in sizes], "log-log slope", "growth"], rows))
    dag_n = res["budget_nodes"]
    if dag_n in syn["timings"]["dag"]:
        t = syn["timings"]["dag"][dag_n]
        verdicts = [
            f"{s} {_s(t[s])} ({'under' if t[s] < BUDGET_S else '**over**'} 1 s)"
            for s in PLANNER_STEPS
        ]
        out.append(
            f"Done-when, planner time on a {dag_n:,}-node DAG: "
            + "; ".join(verdicts)
            + f"; all three together {_s(t['all partition planners'])}.\n"
        )
    hot = res.get("hotspots")
    if hot:
        out.append(
            f"Where the time goes on the {dag_n:,}-node DAG (cProfile, self time of the top "
            "functions per planner call; the profiler inflates absolute times):\n"
        )
        rows = [
            [planner, f"`{fn}`", f"{sec * 1e3:.0f} ms", f"{share * 100:.0f}%"]
            for planner, items in hot.items()
            for fn, sec, share in items
        ]
        out.append(md_table(["planner", "function", "self time", "share of the call"], rows))
    rows = []
    for m, v in zoo.items():
        st = v["stages"]
        rows.append(
            [
                m,
                v["nodes"],
                v["plans"],
                f"{v['wall_s']:.1f} s",
                *[
                    f"{st.get(k, 0):.2f}"
                    for k in ("load model", "profile", "predict", "plan", "validate")
                ],
            ]
        )
    out.append(
        "advise() end to end per zoo model (**measured**, wall seconds; device, edge and cloud "
        f"`host`, ethernet, all plans, {res['zoo_runs']} timed runs per measurement; profiles "
        "measured fresh, host calibration measured once before, "
        f"{res['calibration_s']:.1f} s):\n"
    )
    out.append(
        md_table(
            [
                "model",
                "nodes",
                "plan results",
                "wall",
                "load s",
                "profile s",
                "predict s",
                "plan s",
                "validate s",
            ],
            rows,
        )
    )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="more sizes and repeats")
    args = ap.parse_args(argv)
    quiet_libraries()
    from advisor.zoo.manifest import list_zoo

    sizes = [10, 30, 100, 300, 1000, 2000, 3000, 5000] if args.full else [10, 100, 500, 2000, 5000]
    repeats = 5 if args.full else 3
    t0 = time.perf_counter()
    with fresh_cache() as tmp:
        cal_s = host_calibration_seconds()
        res = {
            "sizes": sizes,
            "repeats": repeats,
            "budget_nodes": BUDGET_NODES,
            "calibration_s": cal_s,
            "zoo_runs": 50 if args.full else 20,
            "synthetic": run_synthetic(sizes, repeats, tmp),
        }
        res["hotspots"] = hotspots(dag_model(BUDGET_NODES), tmp)
        res["zoo"] = run_zoo([z.id for z in list_zoo()], runs=res["zoo_runs"])
    res["wall_seconds"] = time.perf_counter() - t0
    res["load"] = load_average()
    body = render(res) + f"\n\nWall time {res['wall_seconds']:.0f} s; {res['load']}.\n"
    cmd = "python -m bench.bench_scale" + (" --full" if args.full else "")
    write_section("scale", cmd, body, res)
    print(body)
    return res


if __name__ == "__main__":
    main()
