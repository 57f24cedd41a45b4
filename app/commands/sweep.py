"""`edgedl sweep SPEC.yaml`: advise every model × target × link × latency target of a SPEC on
Ray, store each cell as a run, and write a table and a heatmap report."""

from __future__ import annotations

import sys

import click

from app.commands._common import EXIT_BAD_INPUT, EXIT_NO_PLAN, json_option


@click.command("sweep")
@click.argument("spec_path", metavar="SPEC.yaml", type=click.Path(dir_okay=False))
@click.option(
    "--address",
    metavar="ADDR",
    help="An existing Ray cluster (host:port of its head); default: Ray on this machine. "
    "Each node must offer one 'timing' resource (ray start --resources='{\"timing\": 1}').",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Folder for sweep.csv/.json/.md/.html and the artifacts "
    "[default: <cache dir>/sweeps/<sweep id>].",
)
@click.option(
    "--num-cpus",
    type=click.IntRange(1, 1024),
    help="CPUs for the local Ray [default: this machine's cores]; ignored with --address.",
)
@click.option(
    "--db",
    type=click.Path(dir_okay=False),
    help="Runs database [default: <cache dir>/runs.sqlite].",
)
@json_option
@click.option("--quiet", is_flag=True, help="No progress or bookkeeping lines on stderr.")
def sweep_command(spec_path, address, out_dir, num_cpus, db, as_json, quiet) -> None:
    """Advise every cell of SPEC.yaml (models × targets × links × latency targets ×
    accuracy budgets) on Ray; cells already stored are skipped, so a killed sweep resumes.

    Exit 0 when every cell has a recommended plan, 1 when at least one cell has none
    meeting its target and budget (the table says which), 2 on a bad SPEC or a cell that
    could not be advised."""
    from advisor.runs import RunStore
    from advisor.sweep import load_spec, sweep
    from advisor.sweep.run import ProgressPrinter

    spec = load_spec(spec_path)
    store = RunStore(db)
    result = sweep(
        spec,
        address=address,
        num_cpus=num_cpus,
        store=store,
        out_dir=out_dir,
        progress=None if quiet else ProgressPrinter(),
    )
    if as_json:
        click.echo(result.model_dump_json(indent=2))
    else:
        click.echo(
            f"sweep {result.sweep_id}{' (' + result.name + ')' if result.name else ''}: "
            f"{result.cells} cells, {result.advised_now} advised now, "
            f"{result.already_stored} already stored, "
            f"{result.no_plan} without a plan meeting the target"
        )
        rows = [("model", "target", "link", "target ms", "recommended", "pred ms", "margin")]
        for r in result.rows:
            rows.append(
                (
                    r.model,
                    r.target,
                    r.link,
                    f"{r.latency_ms:g}",
                    r.recommended or "none met",
                    f"{r.predicted_ms:.3g}" if r.predicted_ms is not None else "–",
                    f"{r.margin * 100:+.0f}%" if r.margin is not None else "–",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for k, row in enumerate(rows):
            click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
            if k == 0:
                click.echo("  ".join("-" * w for w in widths))
        click.echo("(pred ms: predicted_target end to end; margin = (target - pred) / target)")
        for n in result.notices:
            click.echo(f"note: {n}")
    if not quiet:
        click.echo(
            f"table: {result.outputs.get('csv')} · report: {result.outputs.get('html')}", err=True
        )
    if result.failures:
        click.echo(
            f"error: {len(result.failures)} cell(s) could not be advised; first: "
            f"{result.failures[0]}",
            err=True,
        )
        sys.exit(EXIT_BAD_INPUT)
    if result.no_plan:
        sys.exit(EXIT_NO_PLAN)
