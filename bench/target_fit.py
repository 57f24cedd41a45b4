"""Fit the catalog priors to published measurements and check them on held-out rows.

    python -m bench.target_fit         refit and rewrite data/target_priors.yaml

The published rows (`data/published_latency.yaml`) that can test a catalog target are split
per (target, unit, precision), seeded: 65% fit the priors (`advisor.targets.priors.fit`), 35%
are held back. The error band stored with the priors is the 80th percentile of |ln(predicted /
published)| under 5-fold cross-validation inside the fitted rows, so the held-out rows check
the band as well as the predictions. `band_fallback` is the same for a target predicted from
the median scale of its unit (a catalog target without published rows).
"""

from __future__ import annotations

import datetime as _dt
import math
import random
import statistics
from pathlib import Path

import numpy as np
import yaml

from advisor.targets.catalog import load_catalog
from advisor.targets.priors import (
    DEFAULT_PRIORS,
    Priors,
    fit,
    predict_work,
    roofline_terms,
    runtime_family,
    thread_factor,
)
from bench.target_data import Case, cases, split

FOLDS = 5


EXPONENTS = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]  # CPU thread-scaling exponents tried


def key_of(c: Case) -> str:
    return c.key


def _rows(items: list[Case], exponent: float) -> list[tuple[str, str, float, float, int]]:
    catalog = load_catalog(user=False)
    out = []
    for c in items:
        target = catalog.target(c.row.device)
        roof, count = roofline_terms(c.nodes, target, c.row.precision.value)
        roof *= thread_factor(target, c.unit, c.row.threads, exponent)
        out.append((key_of(c), c.unit, roof, c.row.latency_ms, count))
    return out


def _unit_scale(scale: dict[str, float]) -> dict[str, float]:
    by: dict[str, list[float]] = {}
    for key, s in scale.items():
        _, unit, prec, _ = key.split("/")
        by.setdefault(f"{unit}/{prec}", []).append(s)
    return {k: float(statistics.median(v)) for k, v in sorted(by.items())}


def make_priors(fit_cases: list[Case], band: float, fallback: float, held: dict) -> Priors:
    fits = [(fit(_rows(fit_cases, a)), a) for a in EXPONENTS]
    (scale, per_node, call, _), exponent = min(fits, key=lambda f: f[0][3])
    n = len(fit_cases)
    rows: dict[str, int] = {}
    for c in fit_cases:
        rows[key_of(c)] = rows.get(key_of(c), 0) + 1
    return Priors(
        fitted=f"{_dt.date.today().isoformat()}: python -m bench.target_fit on {n} rows of "
        "data/published_latency.yaml (seeded 65% per target/unit/precision)",
        scale={k: round(v, 5) for k, v in sorted(scale.items())},
        rows=dict(sorted(rows.items())),
        thread_exponent=exponent,
        unit_scale={k: round(v, 5) for k, v in _unit_scale(scale).items()},
        per_node_us={k: float(v) for k, v in per_node.items()},
        call_ms={k: float(v) for k, v in call.items()},
        band=round(band, 4),
        band_fallback=round(fallback, 4),
        held_out=held,
    )


def log_errors(priors: Priors, items: list[Case], *, fallback: bool = False) -> list[float]:
    """ln(predicted / published) per case; `fallback` predicts each from its unit's median."""
    catalog = load_catalog(user=False)
    out = []
    for c in items:
        p = priors
        if fallback:
            drop = {k: v for k, v in priors.scale.items() if not k.startswith(c.row.device + "/")}
            p = priors.model_copy(update={"scale": drop})
        target = catalog.target(c.row.device)
        runtime = runtime_family(c.row.runtime)
        ms = predict_work(
            c.nodes, target, c.row.precision.value, p, threads=c.row.threads, runtime=runtime
        )
        out.append(math.log(ms / c.row.latency_ms))
    return out


def _cross_validated(fit_cases: list[Case]) -> tuple[float, float]:
    """(p80 |ln error| of each fitted row predicted by a fit without its fold, the same for
    rows predicted from their unit's median scale)."""
    rng = random.Random(1)
    order = list(fit_cases)
    rng.shuffle(order)
    errs, fb = [], []
    for k in range(FOLDS):
        test = order[k::FOLDS]
        train = [c for c in order if c not in test]
        p = make_priors(train, 1.0, 1.0, {})
        known = [c for c in test if key_of(c) in p.scale]
        errs += [abs(e) for e in log_errors(p, known)]
        fb += [abs(e) for e in log_errors(p, test, fallback=True)]
    return float(np.percentile(errs, 80)), float(np.percentile(fb, 80))


def summary(errs: list[float], band: float) -> dict[str, float]:
    rel = [abs(math.exp(e) - 1) for e in errs]
    return {
        "rows": len(errs),
        "median_abs_error": round(float(np.median(rel)), 4),
        "p90_abs_error": round(float(np.percentile(rel, 90)), 4),
        "in_band": round(sum(abs(e) <= band for e in errs) / max(1, len(errs)), 4),
    }


def run(path: Path = DEFAULT_PRIORS) -> tuple[Priors, list[Case], list[Case]]:
    usable, _ = cases()
    fit_cases, held = split(usable)
    band, fallback = _cross_validated(fit_cases)
    priors = make_priors(fit_cases, band, fallback, {})
    held_summary = summary(log_errors(priors, held), band)
    priors = priors.model_copy(update={"held_out": held_summary})
    header = (
        "# Catalog priors fitted to published latencies: written by python -m bench.target_fit\n"
        "# (advisor/targets/priors.py explains the model). Do not edit by hand: refit.\n"
    )
    path.write_text(header + yaml.safe_dump(priors.model_dump(), sort_keys=False), "utf-8")
    return priors, fit_cases, held


if __name__ == "__main__":
    p, f, h = run()
    print(f"fitted on {len(f)} rows, held out {len(h)}: {p.held_out}; band ±{p.band:.3f} (ln)")
    print(f"per-node µs {p.per_node_us}, call ms {p.call_ms}")
