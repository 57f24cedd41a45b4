"""Compression: speedup over FP32, size, fidelity and task accuracy of every compression plan.

    python -m bench.bench_compression [--full]

For each zoo model, the compression plans of one advise() run (device = this host):
quantize.static_int8, quantize.dynamic_int8, prune.structured and convert.fp16. Speedup is
the guard's paired timing (advisor.validate.guard.paired_timing): FP32 and the plan timed in
alternating rounds in the same run, median over rounds of FP32 / plan. Plans the guard
rejects stay in the table with the measured reason; skipped plans with the stated one.

The host target lists only the precisions it has a measured peak for (fp32, int8), so
convert.fp16 is skipped there. To measure FP16 anyway, a second advise() runs with a catalog
device that lists fp16 (the first device-tier target that does): the FP16 model still runs
on this host — speed and fidelity are measured_host — only its prediction is for that device.
"""

from __future__ import annotations

import argparse
import time

from bench.common import (
    fresh_cache,
    md_table,
    publish,
    quiet_libraries,
    zoo_advice,
)

COMPRESSION_KINDS = (
    "quantize.static_int8",
    "quantize.dynamic_int8",
    "prune.structured",
    "convert.fp16",
)


def fp16_device() -> str | None:
    """The first device-tier catalog target that lists fp16, or None."""
    from advisor.targets.catalog import load_catalog

    for t in load_catalog().targets.values():
        if t.tier == "device" and "fp16" in t.precisions:
            return t.id
    return None


def plan_row(model: str, plan, base, device: str) -> dict:
    """One table row from a PlanResult (and the FP32 baseline of the same advise run)."""
    pt = plan.extra.get("paired_timing") if plan.extra else None
    f = plan.fidelity
    return {
        "model": model, "plan": plan.kind, "device": device, "status": plan.status,
        "speedup": (1 / pt["ratio"]) if pt else None,
        "fp32_ms": pt["fp32_ms"] if pt else None, "plan_ms": pt["plan_ms"] if pt else None,
        "rounds": pt["rounds"] if pt else None, "spread": pt["spread"] if pt else None,
        "size_bytes": plan.size_bytes, "fp32_size_bytes": base.size_bytes if base else None,
        "max_abs_error": f.max_abs_error if f else None,
        "top1_agreement": f.top1_agreement if f else None,
        "accuracy": f.accuracy if f else None,
        "baseline_accuracy": f.baseline_accuracy if f else None,
        "samples": f.samples if f else None,
        "reasons": list(plan.reasons),
    }  # fmt: skip


def rows_from(model: str, advice, kinds=COMPRESSION_KINDS) -> list[dict]:
    base = next((p for p in advice.plans if p.kind == "baseline.device"), None)
    return [
        plan_row(model, p, base, advice.request.device) for p in advice.plans if p.kind in kinds
    ]


def run(models: list[str], runs: int = 20) -> dict:
    rows = []
    fp16_dev = fp16_device()
    for m in models:
        advice, _ = zoo_advice(m, runs=runs)
        rows += [
            r for r in rows_from(m, advice) if not (r["plan"] == "convert.fp16" and fp16_dev)
        ]  # measured below
        if fp16_dev:
            a16, _ = zoo_advice(m, device=fp16_dev, plans=("convert.fp16",), runs=runs)
            rows += rows_from(m, a16, ("convert.fp16",))
    return {"rows": rows, "fp16_device": fp16_dev}


def _f(x, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def render(res: dict) -> str:
    out = [
        "All figures **measured_host** (this host, ORT CPU, 1 thread). Speedup = FP32 / plan "
        "latency, median over the guard's alternating rounds (`rounds` × 10 runs each, both "
        "models in the same run); size = bytes of the model file(s) the device holds; "
        "fidelity against FP32 on the `samples` evaluation inputs (the zoo's labelled "
        "held-out split where it has one, so task accuracy; else random valid inputs, so only "
        f"agreement with FP32). FP16 rows: device `{res['fp16_device']}` (lists fp16) — see below.",
        "",
    ]
    header = [
        "model",
        "plan",
        "status",
        "speedup",
        "FP32 ms",
        "plan ms",
        "rounds",
        "size (KiB) plan / FP32",
        "samples",
        "max abs err",
        "top-1 agree",
        "accuracy (FP32)",
        "reason",
    ]
    rows = []
    for r in res["rows"]:
        acc = (
            f"{r['accuracy'] * 100:.1f}% ({r['baseline_accuracy'] * 100:.1f}%)"
            if r["accuracy"] is not None
            else "–"
        )
        size = (
            f"{r['size_bytes'] / 1024:.0f} / {r['fp32_size_bytes'] / 1024:.0f}"
            if r["size_bytes"] and r["fp32_size_bytes"]
            else "–"
        )
        reason = "; ".join(r["reasons"]) or "–"
        rows.append(
            [
                r["model"],
                r["plan"],
                r["status"],
                _f(r["speedup"], ".2f") + ("×" if r["speedup"] else ""),
                _f(r["fp32_ms"], ".3g"),
                _f(r["plan_ms"], ".3g"),
                _f(r["rounds"], "d"),
                size,
                _f(r["samples"], "d"),
                _f(r["max_abs_error"], ".2g"),
                _f(r["top1_agreement"] * 100 if r["top1_agreement"] is not None else None, ".1f")
                + ("%" if r["top1_agreement"] is not None else ""),
                acc,
                reason.replace("|", "/"),
            ]
        )
    out.append(md_table(header, rows))
    out.append(
        "Status is the advisor's: `rejected` plans were measured and failed the guard (slower "
        "than FP32 beyond max(5%, the rounds' spread)) or the accuracy budget; `skipped` plans "
        "do not apply (reason stated); `recommended`/`candidate` passed both. The host target "
        "lists only fp32 and int8 (the precisions with a measured peak), so `convert.fp16` "
        "with device `host` is skipped; the FP16 rows above ran the same conversion with "
        f"device `{res['fp16_device']}`, measured here."
    )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--full", action="store_true", help="50 timed runs per measurement (default 20)"
    )
    args = ap.parse_args(argv)
    quiet_libraries()
    from advisor.zoo.manifest import list_zoo

    t0 = time.perf_counter()
    with fresh_cache():
        res = run([z.id for z in list_zoo()], runs=50 if args.full else 20)
    return publish("compression", "bench_compression", args.full, res, t0, render)


if __name__ == "__main__":
    main()
