"""Advise speed: wall time and peak memory of `edgedl advise`, new defaults against the
previous exhaustive ones, and whether they decide the same.

    python -m bench.bench_speed [--models digits_cnn,resnet50_class] [--decisions N] [--full]

Speed. For the five zoo models and a ResNet-50-class model (ResNet-50 v1.5, 25.6 M
parameters, 4.1 GMACs, built here from its torch definition with seeded random weights and
exported to ONNX), each request runs as `edgedl advise ... --json` in its own subprocess,
once with the defaults (adaptive measurement) and once with `--exhaustive` (the fixed
counts the advisor used before: `--runs` per stage, 7 alternating guard rounds, every plan
built), alternating which goes first. Wall time is the subprocess's, interpreter start and
imports included; `advise()` seconds are the run's own `stage_seconds.total`; peak RSS is the
child's `ru_maxrss` (read in a fresh interpreter whose one child is the advise run). The
host calibration and the content-keyed caches (pruning fine-tunes, quantized models) are
filled by a warm-up run first and shared by both settings, as they are for a user's second
question about the same model; the per-node profile is dropped before every timed run, so
each run profiles.
The request is the issue's: device rpi4, edge edge_t4, cloud cloud_a100, wifi, 200 ms.

Same decisions. On the plan-quality cases (each zoo model × each link, the partition
planners) and the compression cases (each zoo model, the compression planners, device =
this host), advise() runs in this process with both settings; the recommended plan and the
set of rejected (or not validated) plans are compared, and every differing case is listed
with the plans' reasons.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.common import ROOT, fresh_cache, md_table, publish, quiet_libraries

ZOO = ("digits_cnn", "resnet_style", "mobilenetv2_style", "transformer_encoder", "digits_multiexit")
BIG = "resnet50_class"
REQUEST = (
    "--device", "rpi4", "--edge", "edge_t4", "--cloud", "cloud_a100",
    "--link", "wifi", "--latency-ms", "200",
)  # fmt: skip
TARGETS = {"big_s": 20.0, "big_gb": 1.0, "zoo_s": 3.0, "same": 0.95}
LINKS = ("3g", "4g", "5g", "wifi", "ethernet")
PARTITION_KINDS = ("baseline.device", "baseline.server", "partition.chain", "partition.dag")
COMPRESSION_KINDS = (
    "baseline.device",
    "quantize.static_int8",
    "quantize.dynamic_int8",
    "prune.structured",
    "convert.fp16",
)


# --- the ResNet-50-class model (ResNet-50 v1.5, He et al. 2016; as bench/archs.py) ----------


def resnet50_onnx(folder: Path) -> Path:
    """ResNet-50 v1.5 (bench/archs.py) with seeded random weights, exported once into
    `folder`."""
    path = folder / f"{BIG}.onnx"
    if path.exists():
        return path
    import onnx
    import torch

    from advisor.graph.io import quiet_export
    from bench.archs import build

    proto = quiet_export(
        build("resnet50"), (torch.randn(1, 3, 224, 224),), input_names=["x"],
        output_names=["logits"],
    )  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, path)
    return path


# --- speed: one advise per subprocess ---------------------------------------------------------


def advise_subprocess(model: str, mode: str, cache: Path, out: Path) -> dict:
    """`edgedl advise` in a child process: wall s, advise() s, peak RSS, and its decisions."""
    shutil.rmtree(cache / "profiles", ignore_errors=True)  # every timed run profiles
    cmd = [sys.executable, "-c", "from app.cli import main; main()", "advise", model, *REQUEST]
    cmd += ["--json", "--quiet", "--out", str(out / f"{Path(model).stem}-{mode}")]
    cmd += ["--exhaustive"] if mode == "exhaustive" else []
    env = {**os.environ, "EDGEDL_CACHE_DIR": str(cache)}
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    if proc.returncode not in (0, 1):  # 1: no plan met the target, still an answer
        raise RuntimeError(f"advise {model} {mode} failed: {proc.stderr.strip()[-400:]}")
    advice = json.loads(proc.stdout)
    return {
        "wall_s": wall,
        "advise_s": advice["stage_seconds"].get("total"),
        "peak_mb": _peak_kb() / 1024,
        **decisions(advice),
        "lost": sorted(
            p["id"] for p in advice["plans"] if p["status"] == "rejected" or not p["meets_latency"]
        ),
    }


def _peak_kb() -> float:
    """Peak RSS (KB, Linux) of the largest child this process has waited for: `_isolated`
    calls `advise_subprocess` in a fresh interpreter, whose one child is the advise run."""
    import resource

    return float(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def decisions(advice: dict) -> dict:
    """The recommended plan, the rejected plans (accuracy budget, speed guard, a broken
    build), and the plans not validated (new defaults only: predicted far over the target)."""

    def ids(status: str) -> list[str]:
        return sorted(p["id"] for p in advice["plans"] if p["status"] == status)

    return {
        "recommended": advice["recommended"],
        "rejected": ids("rejected"),
        "not_validated": ids("not_validated"),
    }


def same_decisions(new: dict, old: dict, old_advice: dict) -> bool:
    """Same recommendation and rejected set, and every plan the new defaults did not validate
    missed the latency target (or was rejected) in the exhaustive run too."""
    lost = {
        p["id"] for p in old_advice["plans"] if p["status"] == "rejected" or not p["meets_latency"]
    }
    return (
        new["recommended"] == old["recommended"]
        and new["rejected"] == old["rejected"]
        and set(new["not_validated"]) <= lost
    )


def model_arg(model: str, folder: Path) -> str:
    return str(resnet50_onnx(folder)) if model == BIG else f"zoo:{model}"


def run_speed(models: list[str], work: Path) -> list[dict]:
    """Per model: a warm-up advise, then adaptive and exhaustive, alternating the order."""
    cache, out = work / "cache", work / "out"
    rows = []
    for i, model in enumerate(models):
        arg = model_arg(model, work)
        print(f"  {model}: warm-up", flush=True)
        _isolated(arg, "adaptive", cache, out)
        order = ("adaptive", "exhaustive") if i % 2 == 0 else ("exhaustive", "adaptive")
        got = {}
        for mode in order:
            got[mode] = _isolated(arg, mode, cache, out)
            print(f"  {model} {mode}: {got[mode]['wall_s']:.1f} s wall", flush=True)
        new, old = got["adaptive"], got["exhaustive"]
        rows.append(
            {
                "model": model,
                "new": new,
                "old": old,
                "wall_ratio": new["wall_s"] / old["wall_s"],
                "rss_ratio": new["peak_mb"] / old["peak_mb"],
                "same": new["recommended"] == old["recommended"]
                and new["rejected"] == old["rejected"]
                and set(new["not_validated"]) <= set(old["lost"]),
            }
        )
    return rows


def _isolated(model: str, mode: str, cache: Path, out: Path) -> dict:
    """advise_subprocess run from a fresh interpreter, so RUSAGE_CHILDREN is that one run's."""
    code = (
        "import json, sys; from pathlib import Path; from bench.bench_speed import "
        "advise_subprocess as a; print(json.dumps(a(sys.argv[1], sys.argv[2], "
        "Path(sys.argv[3]), Path(sys.argv[4]))))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, model, mode, str(cache), str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip()[-600:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- same decisions: in this process ------------------------------------------------------------


def _advise(model: str, mode: str, kinds: tuple[str, ...], device: str, link: str, out: Path):
    from advisor import AdviceRequest, advise

    req = AdviceRequest(
        model=model,
        device=device,
        edge="edge_t4" if device != "host" else "host",
        cloud="cloud_a100" if device != "host" else "host",
        link=link,
        latency_ms=200 if device != "host" else 10_000,
        plans=list(kinds),
        measurement=mode,  # type: ignore[arg-type]
        out_dir=str(out / f"{Path(model).stem}-{device}-{link}-{len(kinds)}-{mode}"),
    )
    return advise(req).model_dump(mode="json")


def decision_cases(models: list[str], links: tuple[str, ...]) -> list[tuple[str, ...]]:
    """(label, model, device, link, kinds): plan-quality then compression cases."""
    cases: list[tuple] = []
    for m in models:
        for link in links:
            cases.append((f"plan-quality {m} {link}", m, "rpi4", link, PARTITION_KINDS))
    for m in models:
        cases.append((f"compression {m}", m, "host", "ethernet", COMPRESSION_KINDS))
    return cases


def run_decisions(models: list[str], links: tuple[str, ...], out: Path) -> list[dict]:
    rows = []
    for label, model, device, link, kinds in decision_cases(models, links):
        got = {m: _advise(model, m, kinds, device, link, out) for m in ("adaptive", "exhaustive")}
        new, old = (decisions(got[m]) for m in ("adaptive", "exhaustive"))
        same = same_decisions(new, old, got["exhaustive"])
        why = "" if same else _why(got["adaptive"], got["exhaustive"], new, old)
        rows.append({"case": label, "new": new, "old": old, "same": same, "why": why})
        print(f"  {label}: {'same' if same else 'DIFFERS'}", flush=True)
    return rows


def _why(new_a: dict, old_a: dict, new: dict, old: dict) -> str:
    """The reasons of every plan whose fate differs, from both runs."""
    ids = (
        set(new["rejected"]) ^ set(old["rejected"])
        | set(new["not_validated"])
        | {new["recommended"], old["recommended"]}
    )
    bits = []
    for pid in sorted(i for i in ids if i):
        for tag, a in (("new", new_a), ("old", old_a)):
            p = next((q for q in a["plans"] if q["id"] == pid), None)
            if p is not None:
                reason = p["reasons"][0] if p["reasons"] else "no reason (ranked by prediction)"
                ms = p["predicted"]["ms"] if p.get("predicted") else None
                bits.append(f"{pid} ({tag}: {p['status']}, {ms and round(ms, 3)} ms; {reason})")
    return "; ".join(bits)


def verdicts(speed: list[dict], same: list[dict]) -> dict[str, bool | None]:
    """The issue's targets: ResNet-50 class <= 20 s and <= 1 GB, each zoo model <= 3 s (wall
    of the subprocess), same decisions in >= 95% of cases; None where not run."""
    big = [r for r in speed if r["model"] == BIG]
    zoo = [r for r in speed if r["model"] != BIG]
    return {
        "big_seconds": big[0]["new"]["wall_s"] <= TARGETS["big_s"] if big else None,
        "big_memory": big[0]["new"]["peak_mb"] <= TARGETS["big_gb"] * 1024 if big else None,
        "zoo_seconds": all(r["new"]["wall_s"] <= TARGETS["zoo_s"] for r in zoo) if zoo else None,
        "same_decisions": sum(r["same"] for r in same) / len(same) >= TARGETS["same"]
        if same
        else None,
    }


# --- report ----------------------------------------------------------------------------------


def render(speed: list[dict], same: list[dict]) -> str:
    rows = [
        [
            r["model"],
            f"{r['new']['wall_s']:.1f} s ({r['new']['advise_s']:.1f} s)",
            f"{r['old']['wall_s']:.1f} s ({r['old']['advise_s']:.1f} s)",
            f"{r['wall_ratio']:.2f}",
            f"{r['new']['peak_mb']:.0f} / {r['old']['peak_mb']:.0f} MB",
            "yes" if r["same"] else "no",
        ]
        for r in speed
    ]
    body = (
        "Wall time of one `edgedl advise` subprocess (**measured**, this host; in brackets "
        "advise()'s own seconds), new defaults vs `--exhaustive` (the previous defaults) in "
        "the same run; peak RSS from the child's ru_maxrss.\n\n"
        + md_table(
            ["model", "default", "exhaustive", "wall ratio", "peak RSS", "same decisions"], rows
        )
    )
    if same:
        n_same = sum(r["same"] for r in same)
        body += (
            "\nSame decisions (the recommended plan and the set of rejected plans match, and "
            "every plan the new defaults did not validate also missed the target or was "
            f"rejected in the exhaustive run): "
            f"{n_same} of {len(same)} cases ({n_same / len(same):.0%}; target ≥ "
            f"{TARGETS['same']:.0%}).\n\n"
        )
        diff = [[r["case"], r["why"]] for r in same if not r["same"]]
        if diff:
            body += md_table(["case that differs", "why (each plan's status and reason)"], diff)
    return body


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join((*ZOO, BIG)), help="comma-separated")
    ap.add_argument("--decisions", default=",".join(ZOO), help="models for 'same decisions'")
    ap.add_argument("--links", default=",".join(LINKS))
    ap.add_argument("--full", action="store_true", help="(same as the default size)")
    args = ap.parse_args(argv)
    quiet_libraries()
    models = [m for m in args.models.split(",") if m]
    t0 = time.perf_counter()
    with fresh_cache() as cache:
        work = Path(cache) / "bench-speed"
        speed = run_speed(models, work)
        dec_models = [m for m in args.decisions.split(",") if m]
        links = tuple(x for x in args.links.split(",") if x)
        same = run_decisions([f"zoo:{m}" for m in dec_models], links, work / "decisions")
    res = {"speed": speed, "decisions": same, "targets": TARGETS, "verdicts": verdicts(speed, same)}
    return publish("advise speed", "bench_speed", args.full, res, t0, lambda r: render(speed, same))


if __name__ == "__main__":
    main()
