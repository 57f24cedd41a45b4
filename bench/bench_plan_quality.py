"""Plan quality against a measured oracle: regret of the advisor and of three baselines.

    python -m bench.bench_plan_quality [--full]

The emulated setting (both sides measured for real, on this host):
- device = this host, ONNX Runtime CPU, 1 intra-op thread, ORT_ENABLE_ALL;
- server = this host's measured time for the server-side part divided by SPEED (10× by
  default: an emulated faster server; --full adds 3× and 30×);
- link = each preset of data/hardware.yaml, costed with advisor.targets.catalog.transfer_ms
  (RTT/2 + bytes / bandwidth per direction), the link model the planners use.

The oracle measures, for every enumerated cut of the model (and every non-prefix head any
method picked), the real head and tail sub-models (advisor.graph.cuts.split_model), round-robin in
shuffled order so machine drift hits every cut alike; a placement's latency in one round is
head + up(bytes crossing) + tail / SPEED + down(output bytes). All-on-device is the whole
model; all-on-server uploads the input. This host's speed moves by tens of percent from one
second to the next, while one round covers every placement in a fraction of that, so the
comparison is paired: each placement's per-round latency is divided by the whole model's in
the same round, and its oracle figure is the median of that ratio over the rounds. The
oracle's best is the lowest; regret = a method's choice's figure / the best's figure - 1.

Methods, all given the same emulated setting:
- advisor: the registered planners baseline.device, baseline.server, partition.chain and
  partition.dag run on a PlanContext holding what advise(device='host') predicts with — the
  per-node host predictions (advisor.targets.predict: per-node ORT_ENABLE_BASIC medians × the
  model's ALL/BASIC scale) and the measured per-call overhead once per compute stage — on the
  device, and the same divided by SPEED on the server; the candidate with the lowest predicted
  latency wins, as advise() ranks FP32 partitions with `--prefer latency` (other preferences
  weigh accuracy or size too);
- Neurosurgeon-style: per-op-type linear regression of per-node latency on FLOPs, input bytes
  and output bytes, fitted on the same per-node host predictions of the OTHER zoo models
  (leave-one-model-out; op types unseen there use a regression pooled over all types);
  chain (single-tensor) cuts and the two endpoints only, scanned with the same cost model;
- all on the device; all on the server;
- advisor_before (not the product, no verdict uses it): the same planners fed the predictor
  the advisor had before the ALL scaling and the per-call overhead (per-node BASIC medians,
  from the same profile), to show what the change bought in plan quality.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench.common import (
    fresh_cache,
    md_table,
    median,
    pct,
    publish,
    quiet_libraries,
)
from bench.neurosurgeon import fit_layer_regression, neurosurgeon_choice, node_features

LINKS = ("3g", "4g", "5g", "wifi", "ethernet")
PARTITION_KINDS = ("baseline.device", "baseline.server", "partition.chain", "partition.dag")
METHODS = ("advisor", "neurosurgeon", "all_device", "all_server")
# not the product: the advisor's planners fed its former predictor (per-node BASIC medians,
# unscaled, no per-call overhead), from the same profile; no verdict uses it
BEFORE = "advisor_before"
SUMMARY_METHODS = (*METHODS, BEFORE)
TOLERANCE = 0.05  # done-when: median advisor regret <= 5%


# --- regret --------------------------------------------------------------------------------


def regrets(oracle_ms: dict[str, float], chosen: dict[str, str]) -> dict[str, float]:
    """Per method: oracle latency of its choice / the oracle's best - 1.

    >>> regrets({"a": 10.0, "b": 12.0}, {"m1": "a", "m2": "b"})
    {'m1': 0.0, 'm2': 0.19999999999999996}
    """
    best = min(oracle_ms.values())
    return {m: oracle_ms[p] / best - 1 for m, p in chosen.items()}


# --- placements, choices, measurements ---------------------------------------------------------


def _describe(graph, head: frozenset[str]) -> str:
    n = len(graph.nodes)
    if not head:
        return "all-server"
    if len(head) == n:
        return "all-device"
    names = [x.name for x in graph.nodes]
    if head == frozenset(names[: len(head)]):
        return f"cut@{len(head)} ({graph.nodes[len(head) - 1].layer})"
    return f"min-cut head {len(head)}/{n} nodes"


def _context(graph, host, link, device_ms, speed: float, work_dir: Path, overhead_ms=0.0):
    """The emulated setting as a PlanContext: the server is the device's figures / `speed`,
    per-node and per-call alike (the oracle divides the tail's whole measured run)."""
    from advisor.measure.calibrate import calibrate
    from advisor.plans import PlanContext

    server_ms = {k: v / speed for k, v in device_ms.items()}
    return PlanContext(
        graph=graph, device=host, server=host, server_tier="edge", edge=host, cloud=None,
        link=link, cloud_link=None, device_ms=device_ms, server_ms=server_ms, edge_ms=server_ms,
        cloud_ms={}, calib_inputs=[], work_dir=work_dir, calibration=calibrate(threads=1),
        overhead_ms={"device": overhead_ms, "edge": overhead_ms / speed},
    )  # fmt: skip


def _predicted(ctx, cand) -> float:
    """A candidate's predicted latency, as advisor.validate.core sums it for FP32 stages: per-node
    predictions plus the tier's per-call overhead per compute stage, and link-model transfers."""
    from advisor.plans import Compute
    from advisor.targets.catalog import transfer_ms

    g, total = ctx.graph, 0.0
    for step in cand.steps:
        if isinstance(step, Compute):
            per = ctx.device_ms if step.tier == "device" else ctx.server_ms
            total += sum(per[n] for n in step.nodes) + ctx.overhead(step.tier)
        else:
            nbytes = sum(g.tensor(t).nbytes for t in step.tensors)
            total += transfer_ms(nbytes, step.link, step.direction)
    return total


def advisor_choice(ctx) -> tuple[frozenset[str], str, float]:
    """(device-side nodes, plan kind, predicted ms) of the advisor's cheapest FP32 partition."""
    from advisor.plans import PLANNERS, Compute, Skip, load_builtins

    load_builtins()
    best: tuple[float, frozenset[str], str] | None = None
    for kind in PARTITION_KINDS:
        out = PLANNERS[kind].fn(ctx)
        if isinstance(out, Skip):
            continue
        for cand in out:
            head = frozenset().union(
                *[s.nodes for s in cand.steps if isinstance(s, Compute) and s.tier == "device"]
            )
            ms = _predicted(ctx, cand)
            if best is None or ms < best[0]:
                best = (ms, head, kind)
    if best is None:
        raise RuntimeError("no partition planner returned a candidate")
    return best[1], best[2], best[0]


def measure_oracle(
    graph, heads: list[frozenset[str]], feeds, rounds: int, warmup: int = 3, seed: int = 0
) -> dict[frozenset[str], list[tuple[float, float] | None]]:
    """Per head: (head ms, tail ms) of each round, None where the round waited for a core
    (wall time well above the thread's CPU time, advisor.measure.timing.uncontended; kept when
    too few clean rounds remain); key frozenset(all nodes) = the whole model, as (whole ms, 0). The
    lists are aligned by round, so placements can be compared round by round."""
    from advisor.graph.cuts import split_model
    from advisor.measure.profile import make_session
    from advisor.measure.timing import timed_run, uncontended

    full = frozenset(n.name for n in graph.nodes)
    runners: dict[frozenset[str], list] = {}
    whole = make_session(graph.model, threads=1)
    runners[full] = [(whole, {i.name: feeds[i.name] for i in whole.get_inputs()})]
    for head in heads:
        if head in runners or not head or head == full:
            continue
        h_model, t_model, _ = split_model(graph, head)
        hs, ts = make_session(h_model, threads=1), make_session(t_model, threads=1)
        h_feed = {i.name: feeds[i.name] for i in hs.get_inputs()}
        env = {
            **feeds,
            **dict(zip([o.name for o in hs.get_outputs()], hs.run(None, h_feed), strict=True)),
        }
        runners[head] = [(hs, h_feed), (ts, {i.name: env[i.name] for i in ts.get_inputs()})]
    raw: dict[frozenset[str], list[list[tuple[float, float]]]] = {k: [] for k in runners}
    keys = list(runners)
    rng = np.random.default_rng(seed)
    for r in range(warmup + rounds):
        for idx in rng.permutation(len(keys)):
            key = keys[idx]
            parts = [timed_run(sess, feed) for sess, feed in runners[key]]
            if r >= warmup:
                raw[key].append(parts)
    out: dict[frozenset[str], list[tuple[float, float] | None]] = {}
    for key, per_round in raw.items():
        # a round is clean when every part of it is: sum wall and CPU over the parts
        summed = [(sum(w for w, _ in p), sum(c for _, c in p)) for p in per_round]
        keep = set(uncontended(summed, threads=1))
        out[key] = [
            (p[0][0], p[1][0] if len(p) > 1 else 0.0) if i in keep else None
            for i, p in enumerate(per_round)
        ]
    return out


def oracle_totals(graph, head: frozenset[str], times, link, speed: float) -> list[float | None]:
    """Per-round oracle latency of a placement (ms), None for a dropped round."""
    from advisor.graph.cuts import crossing_tensors
    from advisor.plans.costs import input_bytes, output_bytes
    from advisor.targets.catalog import transfer_ms

    full = frozenset(n.name for n in graph.nodes)
    whole = [t[0] if t else None for t in times[full]]
    down = transfer_ms(output_bytes(graph), link, "down")
    if head == full:
        return whole
    if not head:
        up = transfer_ms(input_bytes(graph), link, "up")
        return [None if w is None else up + w / speed + down for w in whole]
    up = transfer_ms(sum(graph.tensor(t).nbytes for t in crossing_tensors(graph, head)), link, "up")
    return [None if t is None else t[0] + up + t[1] / speed + down for t in times[head]]


def paired(per_round: list[float | None], ref: list[float | None]) -> list[float]:
    """Round-by-round ratios of a placement's latency to the reference's (rounds both have).

    >>> paired([2.0, None, 3.0], [1.0, 1.0, 2.0])
    [2.0, 1.5]
    """
    return [a / b for a, b in zip(per_round, ref, strict=True) if a is not None and b]


def clean(per_round: list[float | None]) -> list[float]:
    return [x for x in per_round if x is not None]


# --- the benchmark -----------------------------------------------------------------------------


def run(
    models: list[str],
    speeds: tuple[float, ...],
    rounds: int,
    profile_runs: int = 20,
    links: tuple[str, ...] = LINKS,
    work_dir: Path | None = None,
) -> dict:
    """Measure every case; returns the results dict (cases + summary)."""
    from advisor.measure.calibrate import calibrate
    from advisor.measure.profile import profile_model
    from advisor.model import load_model, sample_inputs
    from advisor.targets.catalog import get_link, get_target, load_catalog
    from advisor.targets.predict import opt_level_scale, predict_nodes

    catalog = load_catalog()
    host = get_target("host", catalog, threads=1)
    cal = calibrate(threads=1)
    graphs = {m: load_model(m) for m in models}
    feeds = {m: sample_inputs(g, seed=0) for m, g in graphs.items()}
    profiles = {
        m: profile_model(g, feeds[m], runs=profile_runs, cache=False) for m, g in graphs.items()
    }
    host_ms = {m: predict_nodes(g, profiles[m], host, cal) for m, g in graphs.items()}
    before_ms = {m: {k: t.median_ms for k, t in p.nodes.items()} for m, p in profiles.items()}
    overhead = cal.run_overhead_ms
    train = {
        m: [(g.node(n).op_type, node_features(g)[n][1], ms) for n, ms in host_ms[m].items()]
        for m, g in graphs.items()
    }
    cases = []
    for m, g in graphs.items():
        others = [s for o in models if o != m for s in train[o]]
        if not others:
            raise ValueError("the leave-one-model-out regression needs at least two models")
        reg = fit_layer_regression(others)
        ns_ms = reg.predict(node_features(g))
        unseen = sorted({n.op_type for n in g.nodes} - set(reg.per_type))
        full = frozenset(n.name for n in g.nodes)
        choices = {}
        for speed in speeds:
            for link_id in links:
                link = get_link(link_id, catalog)
                wd = work_dir or Path(".")
                ctx = _context(g, host, link, host_ms[m], speed, wd, overhead)
                head, kind, pred = advisor_choice(ctx)
                ctx_b = _context(g, host, link, before_ms[m], speed, wd)
                choices[(speed, link_id)] = {
                    "advisor": head, "neurosurgeon": neurosurgeon_choice(g, ns_ms, link, speed),
                    BEFORE: advisor_choice(ctx_b)[0],
                    "all_device": full, "all_server": frozenset(),
                    "_advisor_kind": kind, "_advisor_pred": pred,
                }  # fmt: skip
        heads = [c.head for c in g.cuts()]
        heads += [c[k] for c in choices.values() for k in SUMMARY_METHODS]
        t0 = time.perf_counter()
        times = measure_oracle(g, heads, feeds[m], rounds)
        oracle_s = time.perf_counter() - t0
        for (speed, link_id), ch in choices.items():
            link = get_link(link_id, catalog)
            per_round = {h: oracle_totals(g, h, times, link, speed) for h in times}
            per_round[frozenset()] = oracle_totals(g, frozenset(), times, link, speed)
            # paired: each round's latency over the whole model's in the same round
            rel = {h: median(paired(v, per_round[full])) for h, v in per_round.items()}
            med = {h: median(clean(v)) for h, v in per_round.items()}
            best_head = min(rel, key=lambda h: rel[h])
            key = {h: str(i) for i, h in enumerate(rel)}
            reg_ = regrets(
                {key[h]: v for h, v in rel.items()},
                {meth: key[ch[meth]] for meth in SUMMARY_METHODS},
            )
            b = clean(per_round[best_head])
            q1, q3 = pct(b, 25), pct(b, 75)
            adv, ns = per_round[ch["advisor"]], per_round[ch["neurosurgeon"]]
            vs = paired(adv, ns)
            cases.append({
                "model": m, "link": link_id, "speed": speed,
                "oracle_best": _describe(g, best_head), "oracle_best_ms": med[best_head],
                "oracle_noise": (q3 - q1) / 2 / med[best_head],
                # how much the advisor-vs-Neurosurgeon ratio itself moves from round to round
                "paired_noise": (pct(vs, 75) - pct(vs, 25)) / 2 / median(vs) if vs else 0.0,
                "placements_measured": len(med),
                "clean_rounds_min": min(len(clean(v)) for v in times.values()),
                "choice": {meth: _describe(g, ch[meth]) for meth in SUMMARY_METHODS},
                "choice_ms": {meth: med[ch[meth]] for meth in SUMMARY_METHODS},
                "regret": reg_,
                "advisor_kind": ch["_advisor_kind"],
                "advisor_predicted_ms": ch["_advisor_pred"],
                "ns_unseen_op_types": unseen,
                "oracle_seconds": oracle_s,
            })  # fmt: skip
    return {"cases": cases, "summary": summarize(cases), "rounds": rounds,
            "profile_runs": profile_runs, "speeds": list(speeds), "links": list(links),
            "run_overhead_ms": overhead,
            "profile_basic_vs_all": {m: {"node_sum_ms": p.node_sum_ms,
                                         "end_to_end_basic_ms": p.end_to_end_basic_ms,
                                         "end_to_end_all_ms": p.end_to_end_ms,
                                         "opt_scale": opt_level_scale(p, cal)}
                                     for m, p in profiles.items()}}  # fmt: skip


def summarize(cases: list[dict]) -> dict:
    """Median / p90 / max regret per method; where the advisor lost to Neurosurgeon."""
    out: dict = {}
    methods = [m for m in SUMMARY_METHODS if all(m in c["regret"] for c in cases)]
    out["methods"] = methods
    for meth in methods:
        r = [c["regret"][meth] for c in cases]
        out[meth] = {
            "median": median(r),
            "p90": pct(r, 90),
            "max": max(r),
            "within_5pct": sum(x <= TOLERANCE for x in r),
            "cases": len(r),
        }
    worse = [c for c in cases if c["regret"]["advisor"] > c["regret"]["neurosurgeon"] + 1e-12]
    beyond = [
        c
        for c in worse
        if c["regret"]["advisor"] - c["regret"]["neurosurgeon"]
        > max(TOLERANCE, c.get("paired_noise", c["oracle_noise"]))
    ]
    hard = [c for c in cases if c["oracle_best"] != "all-device"]
    out["offload_cases"] = {
        meth: {
            "median": median([c["regret"][meth] for c in hard]) if hard else None,
            "max": max([c["regret"][meth] for c in hard]) if hard else None,
            "cases": len(hard),
        }
        for meth in methods
    }
    out["advisor_worse_than_neurosurgeon"] = [(c["model"], c["link"], c["speed"]) for c in worse]
    out["advisor_worse_beyond_noise"] = [(c["model"], c["link"], c["speed"]) for c in beyond]
    out["median_target_met"] = out["advisor"]["median"] <= TOLERANCE
    out["never_worse_than_neurosurgeon"] = not worse
    return out


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def render(res: dict) -> str:
    s = res["summary"]
    speeds = ", ".join(f"{x:g}×" for x in res["speeds"])
    lines = [
        "Regret = (oracle figure of the chosen placement) / (oracle's best) − 1. A "
        "placement's latency in one round is **measured_host** compute (its head and tail "
        f"sub-models, ORT_ENABLE_ALL, 1 thread; {res['rounds']} round-robin rounds, every "
        "placement once per round in shuffled order) plus **link-model** transfers; the "
        f"emulated server is this host's measured time divided by the speed factor ({speeds}). "
        "Its oracle figure is the median over rounds of that latency divided by the whole "
        "model's in the same round (paired: this host's speed moves by tens of percent from "
        "one second to the next, a round takes a fraction of that). The advisor and the "
        "Neurosurgeon-style baseline choose from **predicted** costs (advisor: its own host "
        "prediction — per-node profile at "
        f"ORT_ENABLE_BASIC, {res['profile_runs']} runs, × the model's ALL/BASIC scale, + "
        f"{res['run_overhead_ms'] * 1e3:.1f} µs measured per-call overhead per compute stage, "
        "both ÷ the speed factor on the server; Neurosurgeon: per-op-type regression on the "
        "same per-node figures, leave-one-model-out). *best ms* = the best placement's median "
        "latency, for context. Noise: *raw* = half the inter-quartile range of the best "
        "placement's per-round latency over its median (the host's noise); *paired* = the same "
        "for the per-round ratio of the advisor's choice to the Neurosurgeon-style choice "
        "(0 when they agree), what is left once rounds are paired.",
        "",
    ]
    header = [
        "model",
        "link",
        "server speed",
        "oracle best",
        "best ms",
        "noise raw / paired",
        "advisor",
        "advisor regret",
        "Neurosurgeon",
        "NS regret",
        "all-device regret",
        "all-server regret",
    ]
    rows = []
    for c in res["cases"]:
        r = c["regret"]
        rows.append(
            [
                c["model"],
                c["link"],
                f"{c['speed']:g}×",
                c["oracle_best"],
                f"{c['oracle_best_ms']:.3g}",
                f"{_pct(c['oracle_noise'])} / {_pct(c.get('paired_noise', 0.0))}",
                c["choice"]["advisor"],
                _pct(r["advisor"]),
                c["choice"]["neurosurgeon"],
                _pct(r["neurosurgeon"]),
                _pct(r["all_device"]),
                _pct(r["all_server"]),
            ]
        )
    lines.append(md_table(header, rows))
    summ = [
        [
            m,
            _pct(s[m]["median"]),
            _pct(s[m]["p90"]),
            _pct(s[m]["max"]),
            f"{s[m]['within_5pct']}/{s[m]['cases']}",
        ]
        for m in s["methods"]
    ]
    off = s["offload_cases"]
    summ = [
        row + ([_pct(off[m]["median"]), _pct(off[m]["max"])] if off[m]["cases"] else ["–", "–"])
        for row, m in zip(summ, s["methods"], strict=True)
    ]
    n_off = off["advisor"]["cases"]
    lines.append(
        md_table(
            [
                "method",
                "median regret",
                "p90",
                "max",
                "cases ≤ 5%",
                f"median where offloading pays ({n_off} cases)",
                "max there",
            ],
            summ,
        )
    )
    if BEFORE in s["methods"]:
        lines.append(
            f"`{BEFORE}` is not the product: the same planners fed the predictor the advisor "
            "had before the ORT_ENABLE_ALL scaling and the per-call overhead (per-node BASIC "
            "medians, same profile), to show what the change bought; no verdict below uses "
            "it.\n"
        )
    verdict = "met" if s["median_target_met"] else "**missed**"
    worse = s["advisor_worse_than_neurosurgeon"]
    n_beyond = len(s["advisor_worse_beyond_noise"])
    lost = "; ".join(f"{m}/{lk}/{sp:g}×" for m, lk, sp in worse)
    ns_verdict = (
        "met."
        if not worse
        else f"**missed in {len(worse)} case(s)** ({n_beyond} beyond max(5%, paired noise)): "
        f"{lost}."
    )
    lines.append(
        f"Done-when: advisor median regret ≤ 5% — {verdict} ({_pct(s['advisor']['median'])}); "
        f"never worse than the Neurosurgeon-style baseline — {ns_verdict}"
    )
    prof = res["profile_basic_vs_all"]
    lines.append("")
    lines.append(
        "Per-node profile sum (ORT_ENABLE_BASIC) against the whole model at ORT_ENABLE_ALL "
        "(what runs), measured_host ms, and the ALL/BASIC scale the advisor applies: "
        + "; ".join(
            f"{m} {p['node_sum_ms']:.3g} vs {p['end_to_end_all_ms']:.3g} (× {p['opt_scale']:.2f})"
            for m, p in prof.items()
        )
        + "."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="3 server speeds, more rounds")
    args = ap.parse_args(argv)
    quiet_libraries()
    from advisor.zoo.manifest import list_zoo

    models = [z.id for z in list_zoo()]
    speeds, rounds = ((3.0, 10.0, 30.0), 40) if args.full else ((10.0,), 15)
    t0 = time.perf_counter()
    with fresh_cache() as tmp:
        res = run(models, speeds, rounds, work_dir=tmp)
    return publish("plan-quality", "bench_plan_quality", args.full, res, t0, render)


if __name__ == "__main__":
    main()
