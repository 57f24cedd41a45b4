"""Target prediction: how close `predicted_target` figures come to what a target measures.

    python -m bench.bench_target [--agent URL --token T] [--models a,b]

(a) Across thread counts on this machine: each model is profiled at 1 thread; this machine's
    target profile (`edgedl hardware calibrate`, here, at 1 and 2 threads) predicts it at 2
    threads; then it is measured at 2 threads (ORT_ENABLE_ALL whole-run median).
(b) Across machines: with `--agent URL` the agent's machine is calibrated through its
    /calibrate route (at 1 thread and its own count), each model is predicted for it at its
    count from that profile, then profiled there through the agent. Also: the per-node
    profile measured there, summed and scaled as the advisor plans with it
    (profile-on-target), against its own whole-run time. Without
    `--agent` the bench starts one on 127.0.0.1 at 2 threads (this machine, another thread
    count) and stops it.
(recorded) Second machines no agent reaches: every capture in bench/results/devices
    (`bench.device_capture`), scored by `bench.target_recorded`.
(c) Published measurements: the catalog priors refitted (`bench.target_fit`) and scored on
    the held-out rows of data/published_latency.yaml, with the share inside the stated band.

In (a) and (b) each model's figure is the median-error one of three (prediction, truth)
pairs, each prediction made from a fresh profile just before its truth (`_paired`).

Each reports median and p90 |error|, the share of measurements inside the stated band, and
the plan-quality regret when a device-or-server choice uses the predicted device figure
instead of the measured one (server: the catalog's edge_t4 priors; links 3g, 4g, wifi).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from advisor.graph.load import load_model
from advisor.measure.calibrate import calibrate
from advisor.measure.profile import profile_model
from advisor.measure.suite import MeasuredProfile, host_profile, run_suite
from advisor.model import sample_inputs
from advisor.targets.catalog import get_link, load_catalog, transfer_ms
from advisor.targets.predict import PROFILE_BAND, opt_level_scale
from bench.common import ROOT, md_table, write_section
from bench.target_recorded import captures, predict_at, score

ZOO = ["digits_cnn", "digits_multiexit", "resnet_style", "mobilenetv2_style", "transformer_encoder"]
ARCHS = ["squeezenet1_1", "mobilenet_v2", "resnet18"]  # exported from bench/archs.py
LINKS = ("3g", "4g", "wifi")
RUNS = 15
REPEATS = 3  # (prediction, truth) pairs per model in (a) and (b); see _paired


def _models(names: list[str], folder: Path) -> dict[str, object]:
    """name -> ModelGraph (zoo ids load directly; architectures are exported once)."""
    import torch

    from bench.archs import build, example_input

    out = {}
    for name in names:
        if name in ZOO:
            out[name] = load_model(name)
            continue
        path = folder / f"{name}.onnx"
        if not path.exists():
            torch.onnx.export(build(name), (example_input(name),), str(path), dynamo=True,
                              external_data=False)  # fmt: skip
        out[name] = load_model(str(path))
    return out


def _stats(errors: list[float], band: float) -> dict[str, float]:
    rel = [abs(e) for e in errors]
    return {
        "n": len(rel),
        "median": float(np.median(rel)) if rel else float("nan"),
        "p90": float(np.percentile(rel, 90)) if rel else float("nan"),
        "in_band": sum(abs(math.log1p(e)) <= band for e in errors) / max(1, len(errors)),
    }


def _regret(pred_ms: float, true_ms: float, graph) -> float:
    """Worst relative regret over LINKS of choosing device-only vs server-only (edge_t4 by
    its priors) from the predicted device time, judged by the measured one."""
    from advisor.targets.predict import predict_model as pm

    catalog = load_catalog(user=False)
    server = pm(graph.model, catalog.target("edge_t4"), "fp32")
    server_ms = server.total_ms + server.run_overhead_ms
    in_bytes = sum(t.nbytes for t in graph.inputs)
    out_bytes = sum(t.nbytes for t in graph.outputs)
    worst = 0.0
    for lid in LINKS:
        link = get_link(lid, catalog)
        remote = (
            transfer_ms(in_bytes, link, "up") + server_ms + transfer_ms(out_bytes, link, "down")
        )
        chosen_local = pred_ms <= remote
        got = true_ms if chosen_local else remote
        worst = max(worst, got / min(true_ms, remote) - 1)
    return worst


def _predicted(g, target: MeasuredProfile, threads: int) -> float:
    """The advisor's figure for the whole model on a calibrated target at `threads`: its
    per-node profile here at 1 thread, scaled node by node to the target's profile.

    The profile is taken afresh (cache=False), just before the truth it is scored against:
    one cached by an earlier bench of the same `make bench` was measured minutes before,
    possibly in another spell of this VM's speed, and that drift would count as the
    predictor's error."""
    prof = profile_model(g, sample_inputs(g), runs=RUNS, threads=1, cache=False)
    scale = opt_level_scale(prof, calibrate(threads=1))
    return predict_at(g, prof, scale, host_profile(1), target, threads)


def _paired(name: str, g, predict, measure) -> tuple[dict, object]:
    """REPEATS (prediction, truth) pairs, each prediction made just before its truth; the
    row of the pair with the median error, and that pair's measurement. Two threads on a
    2-core VM are stalled by any other work on the machine, so one truth can land in a slow
    spell and read every prediction too fast (all eight models -5% to -35% in one make
    bench); the median pair keeps such a spell out of the predictor's error."""
    pairs = []
    for _ in range(REPEATS):
        pred_ms = predict()
        got = measure()
        pairs.append((pred_ms / got.end_to_end_ms - 1, pred_ms, got))
    err, pred_ms, got = sorted(pairs, key=lambda p: p[0])[REPEATS // 2]
    true = got.end_to_end_ms
    row = {"model": name, "predicted_ms": pred_ms, "measured_ms": true, "error": err,
           "regret": _regret(pred_ms, true, g)}  # fmt: skip
    return row, got


def across_threads(graphs: dict, profile: MeasuredProfile, threads: int) -> list[dict]:
    rows = []
    for name, g in graphs.items():
        row, _ = _paired(
            name,
            g,
            lambda g=g: _predicted(g, profile, threads),
            lambda g=g: profile_model(g, sample_inputs(g), runs=RUNS, threads=threads, cache=False),
        )
        rows.append(row)
    return rows


def _start_agent(threads: int, folder: Path) -> tuple[str, str, subprocess.Popen]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = "bench-target-token"
    env = {**os.environ, "EDGEDL_AGENT_TOKEN": token, "EDGEDL_CACHE_DIR": str(folder / "c")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "agent", "serve", "--host", "127.0.0.1", "--port",
         str(port), "--threads", str(threads), "--store", str(folder / "m")],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    from advisor.agent import AgentClient

    for _ in range(120):
        try:
            AgentClient(url, token, timeout=2).health()
            return url, token, proc
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the local agent did not start")


def across_machines(graphs: dict, url: str, token: str) -> tuple[list[dict], list[dict], str]:
    from advisor.agent import AgentClient, measure_on_agent
    from advisor.targets.calibrated import measure_target

    with AgentClient(url, token) as client:
        threads = int(client.health()["limits"]["threads"])
    profile, _memory = measure_target(sorted({1, threads}), agent=url, token=token)
    rows, on_target = [], []
    with AgentClient(url, token, timeout=600) as client:
        for name, g in graphs.items():
            row, remote = _paired(
                name,
                g,
                lambda g=g: _predicted(g, profile, threads),
                lambda g=g: measure_on_agent(client, g.model, runs=RUNS, cache=False).profile,
            )
            rows.append(row)
            scale = min(2.0, max(0.1, remote.end_to_end_ms / remote.node_sum_ms))
            summed = sum(t.median_ms for t in remote.nodes.values()) * scale
            again = measure_on_agent(client, g.model, runs=RUNS, cache=False).profile
            on_target.append({"model": name, "predicted_ms": summed,
                              "measured_ms": again.end_to_end_ms,
                              "error": summed / again.end_to_end_ms - 1,
                              "regret": _regret(summed, again.end_to_end_ms, g)})  # fmt: skip
    where = f"{profile.cpu_model} via {url}, {threads} thread(s)"
    return rows, on_target, where


def published() -> tuple[dict[str, float], list[dict]]:
    from bench.target_fit import log_errors, run

    priors, _, held = run()
    errs = log_errors(priors, held)
    rows = []
    for c, e in zip(held, errs, strict=True):
        pred = c.row.latency_ms * math.exp(e)
        rows.append({"model": f"{c.row.id}", "predicted_ms": pred, "measured_ms": c.row.latency_ms,
                     "error": math.exp(e) - 1, "regret": float("nan")})  # fmt: skip
    return {"band": priors.band, **_stats([r["error"] for r in rows], priors.band)}, rows


def _table(rows: list[dict]) -> str:
    return md_table(
        ["model", "predicted ms", "measured ms", "error", "device-or-server regret"],
        [[r["model"], f"{r['predicted_ms']:.3g}", f"{r['measured_ms']:.3g}",
          f"{r['error'] * 100:+.1f}%",
          "–" if math.isnan(r["regret"]) else f"{r['regret'] * 100:.1f}%"] for r in rows],
    )  # fmt: skip


def _verdict(s: dict, median_goal: float, p90_goal: float | None = None) -> str:
    ok = s["median"] <= median_goal and (p90_goal is None or s["p90"] <= p90_goal)
    goal = f"median ≤ {median_goal:.0%}" + (f", p90 ≤ {p90_goal:.0%}" if p90_goal else "")
    return f"{'met' if ok else 'missed'} ({goal})"


RECORDED_NOTE = """
Captured there with `python -m bench.device_capture` (no agent could reach it from here) and
scored here. The truth is each model's median in one ORT_ENABLE_ALL session timed alone, as a
deployment runs it. Two earlier captures that day, made before `profile_model` stopped its two
side sessions spinning, measured resnet18 at 27 ms at 16 threads (3.5 ms alone) and made 8 and
16 threads look slower than 4 for most models: idle workers of interleaved multi-threaded
sessions spin on the cores the timed run needs. Profiled here: this host's suite is measured
when scoring starts, and each count's prediction is the median of those from three fresh
1-thread profiles of the model. Its suite was captured before `hardware calibrate` timed each
probe's thread counts back to back. The GPU rows compare the catalog's cloud_h100
priors (no H200 entry; same compute, less bandwidth) with torch at batch 1, fp32.
"""


def _recorded_section(rec: dict) -> tuple[list[list[str]], str]:
    """Summary rows and the tables for one recorded second machine (bench.target_recorded)."""
    cases, where = rec["cases"], rec["where"]
    labels = {
        "cross": ("(b) recorded: profiled here at 1 thread, predicted there", (0.15, 0.35)),
        "threads": ("(a) recorded: there, 1 thread → 2+ threads", (0.10, None)),
        "on_target": ("(b) recorded: profile on target", (0.10, None)),
        "gpu": ("GPU: catalog priors (cloud_h100) vs torch CUDA", (0.35, None)),
    }
    rows, text = [], f"\n### Recorded second machine: {where}\n" + RECORDED_NOTE
    for key, (label, goals) in labels.items():
        if not cases.get(key):
            continue
        s = _stats([r["error"] for r in cases[key]], PROFILE_BAND)
        verdict = _verdict(s, *goals) if key != "gpu" else "reported (no goal)"
        rows.append([label, f"{s['median']:.1%}", f"{s['p90']:.1%}", f"{s['in_band']:.0%}", "–",
                     verdict])  # fmt: skip
        text += f"\n#### {label}\n\n" + _table(cases[key])
    best = cases.get("best") or []
    if best:
        worst = max(b["regret"] for b in best)
        rows.append(["(b) recorded: thread count the predictions pick", "–", "–", "–",
                     f"{worst:.1%}", "reported"])  # fmt: skip
        text += "\n#### Thread count: predicted best vs measured best\n\n" + md_table(
            ["model", "predicted best", "measured best", "regret"],
            [[b["model"], b["predicted_best"], b["measured_best"], f"{b['regret']:.1%}"]
             for b in best],
        )  # fmt: skip
    return rows, text


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agent", help="agent URL of a second machine (else a local one)")
    ap.add_argument("--token", default=os.environ.get("EDGEDL_AGENT_TOKEN"))
    ap.add_argument("--models", help="comma-separated subset")
    ap.add_argument("--full", action="store_true", help="(accepted for run_all; no change)")
    args = ap.parse_args(argv)
    names = args.models.split(",") if args.models else ZOO + ARCHS
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="edgedl-target-") as tmp:
        graphs = _models(names, Path(tmp))
        here = run_suite((1, 2))
        a_rows = across_threads(graphs, here, 2)
        if args.agent:
            b_rows, on_rows, where = across_machines(graphs, args.agent, args.token)
        else:
            url, token, proc = _start_agent(2, Path(tmp))
            try:
                b_rows, on_rows, where = across_machines(graphs, url, token)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
        recorded = [score(path, Path(tmp)) for path in captures()]
    c_stats, c_rows = published()
    a = _stats([r["error"] for r in a_rows], PROFILE_BAND)
    b = _stats([r["error"] for r in b_rows], PROFILE_BAND)
    on = _stats([r["error"] for r in on_rows], PROFILE_BAND)
    regret = {k: max((r["regret"] for r in rows), default=0.0)
              for k, rows in (("a", a_rows), ("b", b_rows), ("b_on_target", on_rows))}  # fmt: skip
    summary = [
        ["(a) 1 → 2 threads here, target profile", f"{a['median']:.1%}", f"{a['p90']:.1%}",
         f"{a['in_band']:.0%}", f"{regret['a']:.1%}", _verdict(a, 0.10)],
        [f"(b) {where}, target profile", f"{b['median']:.1%}", f"{b['p90']:.1%}",
         f"{b['in_band']:.0%}", f"{regret['b']:.1%}", _verdict(b, 0.15, 0.35)],
        ["(b) profile on target (per-node sum)", f"{on['median']:.1%}", f"{on['p90']:.1%}",
         f"{on['in_band']:.0%}", f"{regret['b_on_target']:.1%}", _verdict(on, 0.10)],
        [f"(c) held-out published rows (n={c_stats['n']})", f"{c_stats['median']:.1%}",
         f"{c_stats['p90']:.1%}", f"{c_stats['in_band']:.0%}", "–",
         _verdict(c_stats, 0.35) + (" · band covers ≥ 80%: "
                                    f"{'met' if c_stats['in_band'] >= 0.8 else 'missed'}")],
    ]  # fmt: skip
    body = (
        f"\nBands: target profile ±{PROFILE_BAND:.2f} (ln); catalog priors ±{c_stats['band']:.2f}"
        " (ln), cross-validated on the fitted rows. Regret: the worst, over the links "
        f"{', '.join(LINKS)}, of choosing device-only or server-only (edge_t4 priors) by the "
        "predicted device time, judged by the measured one. (a) and (b): per model, the "
        f"median-error one of {REPEATS} (prediction, truth) pairs, each prediction from a "
        "1-thread profile taken just before its truth.\n"
        "\n### (a) across thread counts here\n\n" + _table(a_rows)
        + f"\n### (b) across machines: {where}\n\n" + _table(b_rows)
        + "\n### (b) profile on target: per-node sum vs whole run\n\n" + _table(on_rows)
        + "\n### (c) held-out published rows\n\n" + _table(c_rows)
    )  # fmt: skip
    for rec in recorded:
        rows, text = _recorded_section(rec)
        summary.extend(rows)
        body += text
    body = (
        md_table(
            ["case", "median |error|", "p90 |error|", "inside band", "max regret", "verdict"],
            summary,
        )
        + body
    )
    results = {"a": a, "b": b, "b_on_target": on, "c": c_stats, "regret": regret,
               "rows": {"a": a_rows, "b": b_rows, "b_on_target": on_rows, "c": c_rows},
               "recorded": recorded}  # fmt: skip
    write_section("bench_target", "python -m bench.bench_target", body, results)
    print(body)
    return results


if __name__ == "__main__":
    main()
