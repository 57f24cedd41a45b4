"""`edgedl advise MODEL ...`: plan, build, run and rank partition and compression plans."""

from __future__ import annotations

import sys

import click

from app.commands._common import EXIT_NO_PLAN, json_option


def parse_shapes(values: tuple[str, ...]) -> dict[str, list[int]]:
    """NAME=1x3x224x224 → {'NAME': [1, 3, 224, 224]}."""
    out: dict[str, list[int]] = {}
    for v in values:
        name, sep, dims = v.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            out[name] = [int(d) for d in dims.lower().split("x")]
        except ValueError:
            raise click.BadParameter(
                f"{v!r}: use NAME=1x3x224x224", param_hint="--input-shape"
            ) from None
    return out


input_shape_option = click.option(
    "--input-shape",
    "input_shapes",
    multiple=True,
    metavar="NAME=DIMS",
    help="Value for a symbolic input shape, e.g. input_ids=1x128 (repeatable).",
)


class _Progress:
    """Stage progress on stderr: a redrawn bar on a terminal, one line per stage otherwise;
    each with an estimate of the time left (elapsed time scaled by the work left)."""

    def __init__(self, enabled: bool):
        import time

        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.clock = time.perf_counter
        self.t0 = self.clock()

    def eta(self, frac: float) -> str:
        """'about 12 s left', once a tenth of the work is done (earlier guesses mislead)."""
        if frac < 0.1 or frac >= 1.0:
            return ""
        left = (self.clock() - self.t0) * (1 - frac) / frac
        return f" · about {left:.0f} s left"

    def __call__(self, stage: str, frac: float) -> None:
        if not self.enabled:
            return
        text = stage + self.eta(frac)
        if self.tty:
            bar = "#" * int(frac * 30)
            click.echo(f"\r[{bar:<30}] {frac * 100:3.0f}% {text[:72]:<72}", err=True, nl=False)
            if frac >= 1.0:
                click.echo("", err=True)
        else:
            click.echo(f"[{frac * 100:3.0f}%] {text}", err=True)


def parse_size(text: str) -> int:
    """'8G' / '512M' / '100k' / '1000' (bytes) -> bytes (powers of 1024)."""
    units = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    num, unit = (t[:-1], t[-1]) if t and t[-1] in units else (t, "")
    try:
        value = float(num)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        from advisor.errors import RequestError

        raise RequestError(f"--max-memory {text!r}: use a size like 8G, 512M or 1000000 (bytes)")
    return int(value * units[unit])


def _check_report_path(path: str) -> None:
    """The report's format must follow from its suffix and the file must be writable: tried
    by opening it (a folder can pass os.access and still refuse files, like /proc)."""
    from pathlib import Path

    from advisor.errors import RequestError
    from advisor.report.renderers import format_for_path

    file = Path(path).expanduser()
    if file.is_dir():
        raise RequestError(f"--report {path} is a folder; give a file name such as report.html")
    format_for_path(path)
    folder = file.resolve().parent
    if not folder.is_dir():
        raise RequestError(f"--report {path}: the folder {folder} does not exist")
    existed = file.exists()
    try:
        with open(file, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise RequestError(
            f"--report {path}: cannot write there ({exc.strerror or exc}); choose another file"
        ) from None
    if not existed:
        file.unlink(missing_ok=True)


def _store(advice, quiet: bool) -> None:
    """Store the run; a run store that cannot be used costs a warning, never the advice."""
    import sqlite3

    from advisor.cache import cache_dir
    from advisor.errors import AdvisorError
    from advisor.runs import DB_NAME, RunStore

    path = cache_dir() / DB_NAME
    try:
        store = RunStore(path)
        run_id = store.save(advice)
    except (AdvisorError, sqlite3.Error, OSError) as exc:
        click.echo(f"warning: the run was not stored in {path}: {exc}", err=True)
        return
    if not quiet:
        click.echo(
            f"run stored as {run_id} in {store.path} (edgedl report {run_id} --format html "
            "-o FILE)",
            err=True,
        )


def _table(advice) -> str:
    on_target = any(p.measured_target for p in advice.plans)
    rows = [
        (
            "plan",
            "status",
            "predicted_target ms",
            "measured_host ms",
            *(("measured_target ms", "prediction error") if on_target else ()),
            "fidelity",
            "meets",
        )
    ]
    for p in advice.plans:
        f = p.fidelity
        fid = "—"
        if f is not None:
            fid = (
                f"acc {f.accuracy * 100:.2f}%"
                if f.accuracy is not None
                else f"top1 {f.top1_agreement * 100:.1f}%"
                if f.top1_agreement is not None
                else f"cos {f.cosine:.4f}"
            )
        target = (
            (
                f"{p.measured_target.ms:.3f}" if p.measured_target else "—",
                f"{p.prediction_error * 100:.1f}%"
                if p.measured_target and p.prediction_error is not None
                else "—",
            )
            if on_target
            else ()
        )
        rows.append(
            (
                p.id,
                p.status,
                f"{p.predicted.ms:.3f}" if p.predicted else "—",
                f"{p.measured_host.ms:.3f}" if p.measured_host else "—",
                *target,
                fid,
                "yes" if p.meets_latency and p.meets_accuracy else ("no" if p.predicted else "—"),
            )
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@click.command("advise")
@click.argument("model")
@click.option("--device", required=True, help="End-device hardware id (`edgedl hardware list`).")
@click.option("--edge", help="Edge-server hardware id.")
@click.option("--cloud", help="Cloud-server hardware id.")
@click.option(
    "--link",
    help="Link preset id between device and server (e.g. wifi, 4g); required unless the "
    "custom link options below are given.",
)
@click.option("--up-mbps", type=float, help="Custom link: uplink bandwidth in Mbit/s.")
@click.option("--down-mbps", type=float, help="Custom link: downlink bandwidth in Mbit/s.")
@click.option("--rtt-ms", type=float, help="Custom link: round-trip time in ms.")
@click.option(
    "--cloud-link", default="ethernet", show_default=True, help="Link preset edge <-> cloud."
)
@click.option("--latency-ms", type=float, required=True, help="End-to-end latency target in ms.")
@click.option(
    "--accuracy-budget",
    type=float,
    help="Max accuracy drop in points (labelled data); default 1.0.",
)
@click.option(
    "--min-agreement",
    type=float,
    default=0.99,
    show_default=True,
    help="Min top-1 agreement with FP32 when there are no labels.",
)
@click.option(
    "--prefer",
    type=click.Choice(["accuracy", "latency", "size"]),
    default="accuracy",
    show_default=True,
    help="Among plans meeting the target and budget: least accuracy lost then the simplest "
    "(accuracy), the fastest (latency), or the smallest device model (size).",
)
@click.option("--data", type=click.Path(), metavar="FILE", help=".npz with inputs (and labels y).")
@click.option(
    "--calib-data",
    type=click.Path(),
    metavar="FILE",
    help=".npz that static INT8 is calibrated on [default: the first samples of --data, held "
    "back and not evaluated].",
)
@click.option(
    "--allow-nonfinite",
    is_flag=True,
    help="Accept NaN/inf FP32 outputs: fidelity compares the inputs whose outputs are finite.",
)
@click.option(
    "--max-memory",
    metavar="SIZE",
    help="Refuse a model whose estimated memory is above SIZE (e.g. 8G, 512M) [default: the "
    "memory available now].",
)
@click.option("--plan", "plans", multiple=True, help="Only this plan kind (repeatable).")
@click.option(
    "--exit",
    "exits",
    multiple=True,
    metavar="OUTPUT",
    help="An output that is an early exit, shallowest first, the final one last (repeatable).",
)
@click.option("--runs", type=int, default=20, show_default=True, help="Timed runs per measurement.")
@click.option("--threads", type=int, default=1, show_default=True, help="ORT intra-op threads.")
@click.option(
    "--target-threads",
    type=int,
    help="CPU threads a target may use (default: its best measured count, or all its cores).",
)
@click.option(
    "--catalog",
    "catalogs",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="A target file (e.g. from `edgedl hardware calibrate`) to read besides the catalog.",
)
@click.option(
    "--quick",
    is_flag=True,
    help="Fewer timed runs per measurement (each figure says so); same output.",
)
@click.option(
    "--exhaustive",
    is_flag=True,
    help="Fixed counts (--runs per stage, 7 guard rounds) instead of timing until each "
    "figure is settled; builds every plan.",
)
@click.option(
    "--validate-all",
    is_flag=True,
    help="Build and time every plan, also those predicted to miss the target by more than "
    "the predictor's error band.",
)
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False), help="Folder for plan artifacts."
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(),
    metavar="FILE",
    help="Also write a design-review report (.html, .md or .json).",
)
@click.option(
    "--device-agent",
    metavar="URL",
    help="Agent on the real device (`edgedl agent serve`): adds measured_target figures.",
)
@click.option("--server-agent", metavar="URL", help="Agent on the server, for --validate split.")
@click.option(
    "--token", envvar="EDGEDL_AGENT_TOKEN", help="Agents' bearer token (or EDGEDL_AGENT_TOKEN)."
)
@click.option(
    "--validate",
    "validate_mode",
    type=click.Choice(["split"]),
    help="split: run a partition end to end through --server-agent (the recommended plan "
    "if it is a partition, else the best-ranked partition).",
)
@click.option(
    "--emulate-link/--no-emulate-link",
    default=True,
    show_default=True,
    help="Pace the split run at the request's link (else the real network as it is).",
)
@input_shape_option
@json_option
@click.option(
    "--quiet", is_flag=True, help="No progress or bookkeeping lines on stderr (errors stay)."
)
def advise_command(
    model,
    device,
    edge,
    cloud,
    link,
    up_mbps,
    down_mbps,
    rtt_ms,
    cloud_link,
    latency_ms,
    accuracy_budget,
    min_agreement,
    prefer,
    data,
    calib_data,
    allow_nonfinite,
    max_memory,
    plans,
    exits,
    runs,
    threads,
    target_threads,
    catalogs,
    quick,
    exhaustive,
    validate_all,
    out_dir,
    report_path,
    device_agent,
    server_agent,
    token,
    validate_mode,
    emulate_link,
    input_shapes,
    as_json,
    quiet,
) -> None:
    """Recommend partition and compression plans for MODEL (an .onnx path or a zoo id),
    each built and run in ONNX Runtime. Exit 0 with a recommendation, 1 when no plan meets
    the target, 2 on bad input."""
    from pydantic import ValidationError

    from advisor import AdviceRequest, advise
    from advisor.errors import RequestError

    if quick and exhaustive:
        raise RequestError("give --quick or --exhaustive, not both")
    try:
        req = AdviceRequest(
            model=model,
            device=device,
            edge=edge,
            cloud=cloud,
            link=link,
            up_mbps=up_mbps,
            down_mbps=down_mbps,
            rtt_ms=rtt_ms,
            cloud_link=cloud_link,
            latency_ms=latency_ms,
            accuracy_budget=accuracy_budget,
            min_agreement=min_agreement,
            prefer=prefer,
            data=data,
            calib_data=calib_data,
            allow_nonfinite=allow_nonfinite,
            max_memory=parse_size(max_memory) if max_memory else None,
            plans=list(plans) or None,
            exits=list(exits) or None,
            runs=runs,
            threads=threads,
            target_threads=target_threads,
            catalog=list(catalogs),
            measurement="quick" if quick else "exhaustive" if exhaustive else "adaptive",
            validate_all=validate_all,
            out_dir=out_dir,
            input_shapes=parse_shapes(input_shapes),
            device_agent=device_agent,
            server_agent=server_agent,
            agent_token=token,
            validate_split=validate_mode == "split",
            emulate_link=emulate_link,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise RequestError(
            f"{loc + ': ' if loc else ''}{err['msg']}".replace("Value error, ", "")
        ) from None
    if report_path:
        _check_report_path(report_path)  # before minutes of work, not after
    advice = advise(req, progress=_Progress(not quiet))
    if report_path:
        from advisor.report.renderers import write_report

        write_report(advice, report_path)
        if not quiet:
            click.echo(f"report written to {report_path}", err=True)
    _store(advice, quiet)
    if as_json:
        click.echo(advice.model_dump_json(indent=2))
    else:
        click.echo(
            f"{advice.model.name}: {advice.model.nodes} nodes, "
            f"{advice.model.flops / 1e6:.1f} MFLOPs · device {device}"
            f"{' · edge ' + edge if edge else ''}{' · cloud ' + cloud if cloud else ''}"
            f" · target {latency_ms:g} ms"
        )
        for n in advice.notices:
            click.echo(f"note: {n}")
        click.echo(_table(advice))
        sv = advice.split_validation
        if sv is not None:
            click.echo(
                f"split run of {sv.plan_id} via {sv.server_agent} ({sv.link}): "
                f"{sv.end_to_end.ms:.3f} ms measured_target median of {sv.repeats} "
                f"(plan's figure {sv.planned_ms:.3f} ms); output max abs error "
                f"{sv.max_abs_error:.2g} — {'matches' if sv.output_matches else 'MISMATCH'}"
            )
        rec = advice.recommended_plan
        if rec:
            click.echo(f"\nrecommended: {rec.id} — {rec.rationale}")
            if rec.predicted is not None and rec.predicted.band:
                click.echo(f"  expected range: {rec.predicted.band_text()}")
            ties = rec.extra.get("ranking", {}).get("tied_with")  # type: ignore[union-attr]
            if ties:
                click.echo(f"tied on latency (within measured noise): {', '.join(ties)}")
        else:
            click.echo(
                "\nno plan meets the latency target and the accuracy budget; "
                "every plan and why is listed above"
            )
        for p in advice.plans:
            if not p.reasons:
                continue
            if p.status in ("rejected", "skipped", "not_validated"):
                click.echo(f"  {p.status} {p.id}: {p.reasons[0]}")
            elif p.predicted and not (p.meets_latency and p.meets_accuracy):
                click.echo(f"  misses {p.id}: {'; '.join(p.reasons)}")
    if advice.recommended is None:
        sys.exit(EXIT_NO_PLAN)
