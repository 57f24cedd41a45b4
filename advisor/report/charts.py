"""Inline SVG charts of an `Advice`, for the exported reports.

Written by hand on purpose: a report must open offline as one file, and Altair's SVG export
needs a JavaScript runtime (vl-convert) that we do not ship. Each function returns one plain
``<svg>`` string with no blank line in it (so it can sit in Markdown as an HTML block), no
script, no external reference; every text that can come from the model or the user (plan
ids, layer and node names, target ids) goes through `xml.sax.saxutils.escape` / `quoteattr`.

    stage_chart_svg   stacked bars: each plan's predicted_target latency split into device
                      compute, transfer and server compute, with the latency target
    layers_chart_svg  along the model: measured_host and predicted_target device latency per
                      layer (bars) and the layer's output size (line) — the partition picture
    pareto_chart_svg  predicted_target latency against fidelity; the Pareto front joined

>>> from advisor.report.charts import nice_ticks
>>> nice_ticks(7.3)
[0.0, 2.0, 4.0, 6.0, 8.0]
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape, quoteattr

if TYPE_CHECKING:
    from advisor.advice import Advice, PlanResult, Stage

__all__ = [
    "stage_chart_svg",
    "layers_chart_svg",
    "pareto_chart_svg",
    "nice_ticks",
    "stage_category",
    "fidelity_metric",
    "layer_groups",
    "LayerGroup",
]

FONT = "font-family='system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif'"
CATEGORY_COLORS = {"device compute": "#4c78a8", "transfer": "#f58518", "server compute": "#54a24b"}
STATUS_COLORS = {
    "recommended": "#2ca02c",
    "candidate": "#4c78a8",
    "rejected": "#d62728",
    "not_validated": "#c7c7c7",
    "skipped": "#999999",
}
HOST_COLOR, DEVICE_COLOR, SIZE_COLOR = "#4c78a8", "#f58518", "#d62728"


# --- small pieces ----------------------------------------------------------------------------


def nice_ticks(vmax: float, n: int = 5) -> list[float]:
    """Round tick values from 0 to at least `vmax` (about `n` intervals)."""
    if not math.isfinite(vmax) or vmax <= 0:
        return [0.0, 1.0]
    raw = vmax / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    count = math.ceil(vmax / step - 1e-9)
    return [float(round(i * step, 12)) for i in range(count + 1)]


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:,.0f}"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(
    x: float,
    y: float,
    s: str,
    *,
    anchor: str = "start",
    size: int = 11,
    fill: str = "#222",
    rotate: float | None = None,
    weight: str = "normal",
) -> str:
    rot = f" transform='rotate({rotate:.0f} {x:.1f} {y:.1f})'" if rotate is not None else ""
    return (
        f"<text x='{x:.1f}' y='{y:.1f}' font-size='{size}' text-anchor='{anchor}' "
        f"fill='{fill}' font-weight='{weight}'{rot}>{escape(s)}</text>"
    )


def _rect(
    x: float,
    y: float,
    w: float,
    h: float,
    fill: str,
    tip: str | None = None,
    stroke: str | None = None,
) -> str:
    st = f" stroke='{stroke}'" if stroke else ""
    body = f"<title>{escape(tip)}</title>" if tip else ""
    return (
        f"<rect x='{x:.1f}' y='{y:.1f}' width='{max(w, 0.0):.1f}' height='{h:.1f}' "
        f"fill='{fill}'{st}>{body}</rect>"
    )


def _line(
    x1: float,
    y1: float,
    x2: float,
    y2: float,
    stroke: str = "#888",
    dash: str | None = None,
    width: float = 1.0,
) -> str:
    d = f" stroke-dasharray='{dash}'" if dash else ""
    return (
        f"<line x1='{x1:.1f}' y1='{y1:.1f}' x2='{x2:.1f}' y2='{y2:.1f}' stroke='{stroke}' "
        f"stroke-width='{width}'{d}/>"
    )


def _svg(width: int, height: int, title: str, parts: Iterable[str]) -> str:
    head = (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}' role='img' aria-label={quoteattr(title)} {FONT}>"
    )
    body = "\n".join(p for p in parts if p)
    return f"{head}\n<title>{escape(title)}</title>\n{body}\n</svg>"


def _empty(title: str, message: str) -> str:
    return _svg(640, 60, title, [_text(10, 22, title, weight="bold"), _text(10, 44, message)])


def _legend(x: float, y: float, items: list[tuple[str, str]]) -> list[str]:
    out = []
    for label, color in items:
        out.append(_rect(x, y - 9, 10, 10, color))
        out.append(_text(x + 14, y, label))
        x += 26 + 6.8 * len(label)
    return out


def _x_axis(
    x0: float, x1: float, y: float, vmax: float, ticks: list[float], title: str
) -> list[str]:
    out = [_line(x0, y, x1, y, "#444")]
    for t in ticks:
        x = x0 + (x1 - x0) * t / vmax
        out += [_line(x, y, x, y + 4, "#444"), _text(x, y + 16, _fmt(t), anchor="middle", size=10)]
    out.append(_text((x0 + x1) / 2, y + 32, title, anchor="middle"))
    return out


# --- stage bars --------------------------------------------------------------------------------


def stage_category(stage: Stage, device_id: str) -> str:
    """'device compute', 'transfer' or 'server compute' (edge or cloud)."""
    if stage.kind == "transfer":
        return "transfer"
    if stage.target == device_id or stage.name.lower().startswith("device"):
        return "device compute"
    return "server compute"


def stage_chart_svg(advice: Advice, width: int = 760) -> str:
    """Stacked horizontal bars of each plan's stage latencies, predicted_target in ms."""
    title = "Latency per stage — predicted_target (ms); dashed line: latency target"
    plans = [
        p for p in advice.plans if p.status != "skipped" and any(s.predicted for s in p.stages)
    ]
    if not plans:
        return _empty(title, "no plan has predicted stage latencies")
    target = advice.request.latency_ms
    totals = [sum(s.predicted.ms for s in p.stages if s.predicted) for p in plans]
    ticks = nice_ticks(max(max(totals), target) * 1.02)
    vmax = ticks[-1]
    left, right, top, row = 190, width - 70, 44, 24
    height = top + row * len(plans) + 50
    parts = [_text(10, 16, title, weight="bold"), *_legend(left, 34, list(CATEGORY_COLORS.items()))]
    scale = (right - left) / vmax
    for i, (p, total) in enumerate(zip(plans, totals, strict=True)):
        y = top + i * row + 4
        parts.append(
            _text(
                left - 6,
                y + 12,
                _short(p.id, 28),
                anchor="end",
                fill=STATUS_COLORS.get(p.status, "#222"),
                weight="bold" if p.status == "recommended" else "normal",
            )
        )
        x: float = left
        for s in p.stages:
            if s.predicted is None:
                continue
            cat = stage_category(s, advice.request.device)
            w = s.predicted.ms * scale
            where = f" on {s.target}" if s.target else ""
            size = f", {s.bytes:,} bytes" if s.bytes is not None else ""
            tip = f"{p.id} — {s.name}{where}: {s.predicted.ms:.4g} ms predicted_target{size}"
            parts.append(_rect(x, y, w, row - 8, CATEGORY_COLORS[cat], tip, stroke="#fff"))
            x += w
        parts.append(_text(x + 4, y + 12, f"{total:.3g} ms", size=10))
    tx = left + target * scale
    parts.append(_line(tx, top - 4, tx, top + row * len(plans), "#333", dash="5,3"))
    parts.append(_text(tx + 3, top + row * len(plans) + 2, f"target {target:g} ms", size=10))
    parts += _x_axis(
        left, right, top + row * len(plans) + 6, vmax, ticks, "predicted_target latency (ms)"
    )
    return _svg(width, height, title, parts)


# --- per-layer profile ----------------------------------------------------------------------


@dataclass(frozen=True)
class LayerGroup:
    """Consecutive graph nodes of one layer, summed (a row of the per-layer profile)."""

    layer: str
    first_node: str
    last_node: str
    ops: tuple[str, ...]
    nodes: int
    flops: int
    output_bytes: int  # of the last node: what crosses a cut right after this layer
    host_ms: float
    device_ms: float | None
    server_ms: float | None


def _add(a: float | None, b: float | None) -> float | None:
    return b if a is None else (a if b is None else a + b)


def layer_groups(advice: Advice) -> list[LayerGroup]:
    """Consecutive `LayerRow`s of the same layer merged, in execution order."""
    groups: list[LayerGroup] = []
    for r in advice.layers:
        last = groups[-1] if groups else None
        if last is not None and last.layer == r.layer:
            ops = last.ops if r.op_type in last.ops else (*last.ops, r.op_type)
            groups[-1] = LayerGroup(
                last.layer,
                last.first_node,
                r.name,
                ops,
                last.nodes + 1,
                last.flops + r.flops,
                r.output_bytes,
                last.host_ms + r.host_ms,
                _add(last.device_ms, r.device_ms),
                _add(last.server_ms, r.server_ms),
            )
        else:
            groups.append(
                LayerGroup(
                    r.layer,
                    r.name,
                    r.name,
                    (r.op_type,),
                    1,
                    r.flops,
                    r.output_bytes,
                    r.host_ms,
                    r.device_ms,
                    r.server_ms,
                )
            )
    return groups


def _two_axes(
    ms_ticks: list[float],
    kb_ticks: list[float],
    left: float,
    right: float,
    top: float,
    plot_h: float,
    width: int,
) -> list[str]:
    """Ticks and titles of the per-layer chart's two axes: ms on the left, KB on the right."""
    bottom = top + plot_h
    ms_max, kb_max = ms_ticks[-1], kb_ticks[-1]
    parts: list[str] = []
    for t in ms_ticks:
        y = bottom - plot_h * t / ms_max
        parts += [
            _line(left - 4, y, left, y, "#444"),
            _text(left - 6, y + 3, _fmt(t), anchor="end", size=10),
        ]
    for t in kb_ticks:
        y = bottom - plot_h * t / kb_max
        parts += [
            _line(right, y, right + 4, y, SIZE_COLOR),
            _text(right + 6, y + 3, _fmt(t), size=10, fill=SIZE_COLOR),
        ]
    parts.append(_text(14, top + plot_h / 2, "latency per layer (ms)", anchor="middle", rotate=-90))
    parts.append(
        _text(
            width - 12,
            top + plot_h / 2,
            "output size (KB)",
            anchor="middle",
            rotate=90,
            fill=SIZE_COLOR,
        )
    )
    return parts


def layers_chart_svg(advice: Advice, width: int = 900) -> str:
    """Per-layer measured_host and predicted_target device latency (bars, left axis, ms) and
    the layer's output size (line, right axis, KB), in execution order."""
    title = (
        "Per-layer latency and output size along the model — bars: latency (ms), "
        "line: output size (KB)"
    )
    groups = layer_groups(advice)
    if not groups:
        return _empty(title, "no per-layer profile in this advice")
    has_dev = any(g.device_ms is not None for g in groups)
    left, right, top, plot_h = 60, width - 70, 48, 200
    bottom = top + plot_h
    height = bottom + 96
    n = len(groups)
    slot = (right - left) / n
    ms_ticks = nice_ticks(max(max(g.host_ms, g.device_ms or 0.0) for g in groups) * 1.02)
    kb_ticks = nice_ticks(max(g.output_bytes for g in groups) / 1024 * 1.02)
    ms_max, kb_max = ms_ticks[-1], kb_ticks[-1]
    legend = [("measured_host (ms)", HOST_COLOR)]
    if has_dev:
        legend.append((f"predicted_target on {advice.request.device} (ms)", DEVICE_COLOR))
    legend.append(("output size (KB)", SIZE_COLOR))
    parts = [
        _text(10, 16, title, weight="bold"),
        *_legend(left, 36, legend),
        _line(left, bottom, right, bottom, "#444"),
        _line(left, top, left, bottom, "#444"),
        _line(right, top, right, bottom, SIZE_COLOR),
    ]
    parts += _two_axes(ms_ticks, kb_ticks, left, right, top, plot_h, width)
    label_every = max(1, math.ceil(n / 40))
    bar_w = max(slot * (0.4 if has_dev else 0.75), 0.8)
    points = []
    for i, g in enumerate(groups):
        x = left + i * slot + slot * 0.1
        series = [(g.host_ms, HOST_COLOR, "measured_host")]
        if has_dev and g.device_ms is not None:
            series.append((g.device_ms, DEVICE_COLOR, f"predicted_target {advice.request.device}"))
        for j, (v, color, kind) in enumerate(series):
            h = plot_h * v / ms_max
            tip = f"{g.layer} ({g.nodes} node(s), last {g.last_node}): {v:.4g} ms {kind}"
            parts.append(_rect(x + j * bar_w, bottom - h, bar_w, h, color, tip))
        cx = left + (i + 0.5) * slot
        points.append((cx, bottom - plot_h * g.output_bytes / 1024 / kb_max, g))
        if i % label_every == 0:
            parts.append(
                _text(cx, bottom + 10, _short(g.layer, 18), anchor="end", size=9, rotate=-45)
            )
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)
    parts.append(
        f"<polyline points='{path}' fill='none' stroke='{SIZE_COLOR}' stroke-width='1.5'/>"
    )
    for x, y, g in points:
        tip = f"{g.layer}: output {g.output_bytes:,} bytes (node {g.last_node})"
        parts.append(
            f"<circle cx='{x:.1f}' cy='{y:.1f}' r='2.5' fill='{SIZE_COLOR}'>"
            f"<title>{escape(tip)}</title></circle>"
        )
    parts.append(
        _text((left + right) / 2, height - 4, "layer, in execution order", anchor="middle")
    )
    return _svg(width, height, title, parts)


# --- latency vs fidelity -------------------------------------------------------------------


def fidelity_metric(advice: Advice) -> tuple[str, str]:
    """(Fidelity attribute, label): task accuracy when labelled, else top-1 agreement, else
    output cosine similarity — the same order `advise` uses for its Pareto front."""
    fids = [p.fidelity for p in advice.plans if p.fidelity]
    if any(f.accuracy is not None for f in fids):
        return "accuracy", "task accuracy (labelled data)"
    if any(f.top1_agreement is not None for f in fids):
        return "top1_agreement", "top-1 agreement with FP32"
    return "cosine", "output cosine similarity to FP32"


def _points(advice: Advice, metric: str) -> list[tuple[PlanResult, float, float]]:
    out = []
    for p in advice.plans:
        value = getattr(p.fidelity, metric, None) if p.fidelity else None
        if p.predicted is not None and value is not None:
            out.append((p, p.predicted.ms, float(value)))
    return out


def _place_labels(
    anchors: list[tuple[float, float]], w: float = 130, h: float = 11
) -> list[tuple[float, float]]:
    """Label positions near their points, pushed down until no two (w×h) boxes overlap."""
    placed: list[tuple[float, float]] = []
    for x, y in anchors:
        while any(abs(x - px) < w and abs(y - py) < h for px, py in placed):
            y += h
        placed.append((x, y))
    return placed


def pareto_chart_svg(advice: Advice, width: int = 760) -> str:
    """Predicted_target end-to-end latency (ms) against fidelity; the Pareto front joined."""
    metric, label = fidelity_metric(advice)
    title = f"Latency (predicted_target, ms) vs {label}; dashed: latency target"
    pts = _points(advice, metric)
    if not pts:
        return _empty(title, "no plan has both a predicted latency and a fidelity measurement")
    target = advice.request.latency_ms
    ticks = nice_ticks(max(max(ms for _, ms, _ in pts), target) * 1.05)
    x_max = ticks[-1]
    lo, hi = min(v for *_, v in pts), max(v for *_, v in pts)
    pad = max((hi - lo) * 0.1, 1e-3 if hi <= 1.0 else abs(hi) * 0.01)
    y_lo, y_hi = lo - pad, hi + pad
    left, right, top, plot_h = 70, width - 150, 48, 240
    bottom = top + plot_h

    def px(ms: float) -> float:
        return left + (right - left) * ms / x_max

    def py(v: float) -> float:
        return bottom - plot_h * (v - y_lo) / (y_hi - y_lo)

    legend = [(s, STATUS_COLORS[s]) for s in ("recommended", "candidate", "rejected")]
    parts = [
        _text(10, 16, title, weight="bold"),
        *_legend(left, 36, legend),
        "<circle cx='390' cy='32' r='5' fill='#fff' stroke='#000' stroke-width='2'/>",
        _text(399, 36, "ringed: on the Pareto front"),
        _line(left, top, left, bottom, "#444"),
    ]
    parts += _x_axis(left, right, bottom, x_max, ticks, "predicted_target e2e latency (ms)")
    for k in range(5):
        v = y_lo + (y_hi - y_lo) * k / 4
        parts += [
            _line(left - 4, py(v), left, py(v), "#444"),
            _text(left - 6, py(v) + 3, f"{v:.4g}", anchor="end", size=10),
        ]
    parts.append(_text(14, top + plot_h / 2, label, anchor="middle", rotate=-90))
    parts.append(_line(px(target), top, px(target), bottom, "#333", dash="5,3"))
    front = sorted((ms, v) for p, ms, v in pts if p.id in advice.pareto)
    if len(front) > 1:
        path = " ".join(f"{px(ms):.1f},{py(v):.1f}" for ms, v in front)
        parts.append(
            f"<polyline points='{path}' fill='none' stroke='#2ca02c' "
            "stroke-width='1.5' stroke-dasharray='3,2'/>"
        )
    labels = _place_labels([(px(ms) + 8, py(v) - 6) for _, ms, v in pts])
    for (p, ms, v), (lx, ly) in zip(pts, labels, strict=True):
        on_front = p.id in advice.pareto
        color = STATUS_COLORS.get(p.status, "#222")
        tip = (
            f"{p.id} ({p.status}{', Pareto front' if on_front else ''}): "
            f"{ms:.4g} ms predicted_target, {metric} {v:.6g}"
        )
        ring = " stroke='#000' stroke-width='2'" if on_front else ""
        parts.append(
            f"<circle cx='{px(ms):.1f}' cy='{py(v):.1f}' r='{6 if on_front else 4}' "
            f"fill='{color}'{ring}><title>{escape(tip)}</title></circle>"
        )
        parts.append(_text(lx, ly, _short(p.id, 26), size=9))
    return _svg(width, bottom + 44, title, parts)
