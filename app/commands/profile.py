"""`edgedl profile MODEL`: per-layer latency on this host (ORT profiler) and the self-check."""

from __future__ import annotations

import re

import click

from app.commands._common import echo_json, json_option

SELF_CHECK_LIMIT = 0.25  # sum of per-node medians vs whole-model median at ORT_ENABLE_BASIC
_SHAPE = re.compile(r"^\s*([^=\s]+)\s*=\s*(\d+(?:\s*[xX,]\s*\d+)*)\s*$")


def parse_input_shapes(values: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """`NAME=1x3x224x224` (repeatable) -> {NAME: (1, 3, 224, 224)}."""
    from advisor.errors import RequestError

    shapes: dict[str, tuple[int, ...]] = {}
    for text in values:
        m = _SHAPE.match(text)
        if not m:
            raise RequestError(
                f"--input-shape {text!r} is not NAME=DIMxDIM..., e.g. --input-shape x=1x3x224x224"
            )
        dims = tuple(int(d) for d in re.split(r"\s*[xX,]\s*", m.group(2)))
        if any(d < 1 for d in dims):
            raise RequestError(f"--input-shape {text!r}: every dimension must be at least 1")
        shapes[m.group(1)] = dims
    return shapes


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


@click.command("profile")
@click.argument("model")
@click.option("--runs", default=20, show_default=True, help="Timed runs (after warm-up).")
@click.option("--warmup", default=5, show_default=True, help="Untimed warm-up runs.")
@click.option("--threads", default=1, show_default=True, help="ORT intra-op threads (fixed).")
@click.option(
    "--input-shape",
    "input_shapes",
    multiple=True,
    metavar="NAME=1x3x224x224",
    help="Concrete shape for a symbolic input (repeatable).",
)
@click.option(
    "--inputs",
    "inputs_path",
    type=click.Path(dir_okay=False),
    help="Sample inputs as .npz keyed by input name (default: generated).",
)
@click.option(
    "--target",
    "targets",
    multiple=True,
    metavar="ID",
    help="Also predict each node on this target (repeatable; see `edgedl hardware list`).",
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "fp16", "int8"]),
    default="fp32",
    show_default=True,
    help="Precision the model runs at, for --target predictions.",
)
@click.option("--no-cache", is_flag=True, help="Measure again even if a cached profile exists.")
@json_option
def profile(
    model, runs, warmup, threads, input_shapes, inputs_path, targets, precision, no_cache, as_json
) -> None:
    """Profile MODEL (an .onnx path or a zoo id) layer by layer on this host."""
    from advisor.measure.calibrate import calibrate
    from advisor.measure.profile import profile_model
    from advisor.model import load_model, load_npz, sample_inputs
    from advisor.targets.catalog import get_target, load_catalog
    from advisor.targets.predict import effective_precision, predict

    graph = load_model(model, input_shapes=parse_input_shapes(input_shapes) or None)
    inputs = load_npz(inputs_path, graph)[0] if inputs_path else sample_inputs(graph)
    catalog = load_catalog() if targets else None
    chosen = [get_target(t, catalog, threads=threads) for t in targets]  # fail fast on bad ids
    for t in chosen:
        effective_precision(t, precision)  # refuses e.g. fp32 on an int8-only TPU, before timing
    prof = profile_model(
        graph, inputs, runs=runs, warmup=warmup, threads=threads, cache=not no_cache
    )
    preds = []
    if chosen:
        cal = calibrate(threads=threads)
        preds = [predict(graph, prof, t, cal, precision) for t in chosen]
    total = prof.node_sum_ms or 1.0
    ok = prof.self_check_error <= SELF_CHECK_LIMIT
    notes = [*graph.notices, *prof.notes, *(n for p in preds for n in p.notes)]

    if as_json:
        echo_json(
            {
                "model": {
                    "source": graph.source,
                    "name": graph.name,
                    "digest": graph.digest,
                    "flops": graph.total_flops,
                },
                "kind": "measured_host",
                "units": "ms",
                "runs": prof.runs,
                "warmup": prof.warmup,
                "threads": prof.threads,
                "cached": prof.cached,
                "measured_at": prof.measured_at,
                "fingerprint": prof.fingerprint.model_dump(mode="json"),
                "nodes": [
                    {
                        "name": n.name,
                        "layer": n.layer,
                        "op_type": n.op_type,
                        "flops": n.flops,
                        "macs": n.macs,
                        "param_bytes": n.param_bytes,
                        "output_bytes": n.output_bytes,
                        "median_ms": prof.nodes[n.name].median_ms,
                        "p90_ms": prof.nodes[n.name].p90_ms,
                        "share": prof.nodes[n.name].median_ms / total,
                        "executed": prof.nodes[n.name].executed,
                        "kind": "measured_host",
                        **(
                            {"predicted_ms": {p.target_id: p.nodes[n.name] for p in preds}}
                            if preds
                            else {}
                        ),
                    }
                    for n in graph.nodes
                ],
                "node_sum_ms": prof.node_sum_ms,
                "node_sum_raw_ms": prof.node_sum_raw_ms,
                "kernel_overhead_us": prof.kernel_overhead_us,
                "unattributed_ms": prof.unattributed_ms,
                "contended_runs": prof.contended_runs,
                "load_avg": prof.load_avg,
                "end_to_end_basic_ms": prof.end_to_end_basic_ms,
                "end_to_end_basic_p90_ms": prof.end_to_end_basic_p90_ms,
                "end_to_end_ms": prof.end_to_end_ms,
                "end_to_end_p90_ms": prof.end_to_end_p90_ms,
                "self_check": {
                    "error": prof.self_check_error,
                    "limit": SELF_CHECK_LIMIT,
                    "ok": ok,
                    "error_raw": prof.self_check_error_raw,
                    "compares": "sum of per-node medians vs whole-model median, "
                    "both at ORT_ENABLE_BASIC; error_raw before removing the profiler's "
                    "per-kernel overhead",
                },
                "predictions": [p.model_dump(mode="json") for p in preds],
                "notes": notes,
            }
        )
        return

    w = min(40, max(len(n.name) for n in graph.nodes))
    pw = "".join(f" {p.target_id[:14]:>14}" for p in preds)
    click.echo(
        f"{graph.name}  ({graph.source})  {_si(graph.total_flops)} FLOPs, "
        f"{len(graph.nodes)} nodes, {prof.runs} runs, {prof.threads} thread(s)"
        + ("  [cached]" if prof.cached else "")
    )
    click.echo(
        f"{'node':<{w}}  {'op':<18} {'FLOPs':>8} {'out bytes':>9} {'median ms':>9} {'share':>6}{pw}"
    )
    for n in graph.nodes:
        t = prof.nodes[n.name]
        name = n.name if len(n.name) <= w else "…" + n.name[-(w - 1) :]
        extra = "".join(f" {p.nodes[n.name]:>14.4f}" for p in preds)
        click.echo(
            f"{name:<{w}}  {n.op_type[:18]:<18} {_si(n.flops):>8} {_si(n.output_bytes):>9} "
            f"{t.median_ms:>9.4f} {t.median_ms / total:>6.1%}{extra}"
            + ("" if t.executed else "  (folded/fused at BASIC)")
        )
    click.echo(
        f"\nsum of per-node medians  {prof.node_sum_ms:9.3f} ms   (ORT_ENABLE_BASIC, measured_host)"
    )
    click.echo(
        f"end-to-end, BASIC        {prof.end_to_end_basic_ms:9.3f} ms   "
        f"p90 {prof.end_to_end_basic_p90_ms:.3f} ms"
    )
    click.echo(
        f"end-to-end, ALL          {prof.end_to_end_ms:9.3f} ms   "
        f"p90 {prof.end_to_end_p90_ms:.3f} ms"
    )
    click.echo(
        f"self-check error         {prof.self_check_error:9.1%}   "
        + ("ok (within 25%)" if ok else "OVER 25%: per-node figures are unreliable here")
        + f"  [{prof.self_check_error_raw:.1%} before removing the profiler's "
        f"{prof.kernel_overhead_us:.1f} us per kernel]"
    )
    for p in preds:
        label = f"predicted on {p.target_id}"
        click.echo(f"{label:<24} {p.total_ms:9.3f} ms   ({p.kind}, {p.precision_used})")
    fp = prof.fingerprint
    click.echo(
        f"host: {fp.cpu_model}, {fp.logical_cores} logical cores, ISA "
        f"{' '.join(fp.isa_flags) or '-'}, onnxruntime {fp.ort_version}"
    )
    for note in notes:
        click.echo(f"note: {note}")
