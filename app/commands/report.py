"""`edgedl report ...` and `edgedl runs ...`: export a design-review report of an advice run,
and list, show or delete the runs stored in the run store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from app.commands._common import echo_json, json_option

if TYPE_CHECKING:
    from advisor.advice import Advice
    from advisor.runs import RunStore

_STORE_HELP = "Runs database [default: <cache dir>/runs.sqlite]."


def _store(db: str | None) -> RunStore:
    """The run store to read: never created by reading (a missing --db is an error)."""
    from advisor.runs import RunStore

    return RunStore(db, create=False)


def _looks_like_path(arg: str) -> bool:
    return arg.lower().endswith(".json") or "/" in arg or "\\" in arg or Path(arg).exists()


def load_source(arg: str, db: str | None = None) -> Advice:
    """An Advice from a run id (or unique prefix) in the store, or from an advice JSON file."""
    from advisor.report.renderers import load_advice

    if _looks_like_path(arg):
        return load_advice(arg)
    return _store(db).get(arg)


@click.command("report")
@click.argument("source", metavar="RUN_ID_OR_JSON")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "md", "json"]),
    default=None,
    help="Report format [default: from the -o suffix, else html].",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the report here (folders created) instead of printing it.",
)
@click.option("--db", type=click.Path(), metavar="FILE", default=None, help=_STORE_HELP)
def report(source: str, fmt: str | None, output: str | None, db: str | None) -> None:
    """Write a design-review report (self-contained HTML, Markdown or JSON) of an advice run.

    RUN_ID_OR_JSON is a run id from `edgedl runs list` (or a unique prefix, or `latest`), or
    the path of an advice JSON file (`edgedl advise ... --json > advice.json`)."""
    from advisor.report.renderers import format_for_path, render, write_report

    advice = load_source(source, db)
    if output is None:
        click.echo(render(advice, fmt or "html"), nl=False)
        return
    path = write_report(advice, output, fmt or format_for_path(output))
    click.echo(
        f"wrote {path} ({fmt or format_for_path(output)}, {path.stat().st_size:,} bytes)", err=True
    )


@click.group("runs")
def runs() -> None:
    """Advice runs stored in the run store (shared by the app and the CLI)."""


@runs.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Newest N runs only.")
@click.option("--db", type=click.Path(), metavar="FILE", default=None, help=_STORE_HELP)
@json_option
def list_runs(limit: int | None, db: str | None, as_json: bool) -> None:
    """List stored runs, newest first."""
    from advisor.cache import cache_dir
    from advisor.runs import DB_NAME

    path = Path(db) if db else cache_dir() / DB_NAME
    rows = _store(db).list(limit=limit) if path.exists() or db else []
    if as_json:
        echo_json([r.model_dump() for r in rows])
        return
    if not rows:
        click.echo("no stored runs; the app's Advise page stores each run it makes")
        return
    header = ("id", "created", "model", "device", "server", "target ms", "recommended", "plans")
    table = [header] + [
        (
            r.id,
            r.created,
            r.model,
            r.device,
            r.edge or r.cloud or "-",
            f"{r.latency_ms:g}",
            r.recommended or "none",
            str(r.n_plans),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@runs.command("show")
@click.argument("run_id")
@click.option("--db", type=click.Path(), metavar="FILE", default=None, help=_STORE_HELP)
@json_option
def show_run(run_id: str, db: str | None, as_json: bool) -> None:
    """Show one stored run (--json: the whole Advice)."""
    store = _store(db)
    advice = store.get(run_id)
    if as_json:
        from advisor.report.renderers import render_json

        click.echo(render_json(advice), nl=False)
        return
    info = store.summary(run_id)
    req = advice.request
    click.echo(f"run {info.id}  created {info.created}  saved {info.saved}")
    click.echo(
        f"model {advice.model.name} ({req.model}) on {req.device}"
        + (f" + {req.edge}" if req.edge else "")
        + (f" + {req.cloud}" if req.cloud else "")
        + f", link {req.link or 'custom'}, target {req.latency_ms:g} ms"
    )
    click.echo(f"recommended: {advice.recommended or 'none — no plan met the target'}")
    width = max((len(p.id) for p in advice.plans), default=0)
    for p in advice.plans:
        pred = f"{p.predicted.ms:.3g} ms predicted_target" if p.predicted else "-"
        host = f"{p.measured_host.ms:.3g} ms measured_host" if p.measured_host else "-"
        click.echo(f"  {p.status:<11} {p.id:<{width}}  {pred:<26} {host}")
    if info.artifacts_dir:
        click.echo(f"artifacts: {info.artifacts_dir}")
    click.echo(f"report: edgedl report {info.id} -o report.html")


@runs.command("delete")
@click.argument("run_id")
@click.option("--db", type=click.Path(), metavar="FILE", default=None, help=_STORE_HELP)
def delete_run(run_id: str, db: str | None) -> None:
    """Delete a stored run (its artifact files are kept)."""
    store = _store(db)
    rid = store.resolve(run_id)
    store.delete(rid)
    click.echo(f"deleted run {rid}")
