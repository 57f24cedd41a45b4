"""`edgedl kb ...`: search, show, tree, compare, export and stats over the knowledge base."""

from __future__ import annotations

import json
import textwrap

import click

from app.commands._common import echo_json, json_option


def _open():
    from kb import KnowledgeBase

    base = KnowledgeBase.open()
    for note in base.notices:
        click.echo(f"notice: {note}", err=True)
    return base


@click.group("kb")
def kb() -> None:
    """Explore the Edge DL knowledge base (the survey's taxonomy, entries, claims, relations)."""


@kb.command("search")
@click.argument("query", required=False, default="")
@click.option(
    "--category", help="Only entries in this category or below it (an id from `kb tree`)."
)
@click.option(
    "--kind",
    help="technique, system, framework, library, hardware, benchmark, application, challenge.",
)
@click.option("--since", type=int, help="Only entries from this year on.")
@click.option("--family", "model_family", help="Model family: CNN, RNN, Transformer, MLP, GNN.")
@click.option("--tier", type=click.Choice(["device", "edge", "cloud"]), help="Deployment tier.")
@click.option(
    "--executable/--advice-only",
    default=None,
    help="Only techniques the advisor runs / only advice.",
)
@click.option("--limit", default=20, show_default=True, help="Most results to show.")
@json_option
def search(query, category, kind, since, model_family, tier, executable, limit, as_json) -> None:
    """Full-text search over names, titles, summaries and mechanisms."""
    try:
        hits = _open().search(
            query,
            category=category,
            kind=kind,
            since=since,
            model_family=model_family,
            tier=tier,
            executable=executable,
            limit=limit,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if as_json:
        echo_json([h.model_dump() for h in hits])
        return
    if not hits:
        click.echo("no entries match")
        return
    w = max(len(h.id) for h in hits)
    for h in hits:
        click.echo(f"{h.id:<{w}}  {h.kind:<11} {h.year or '':<5} {h.name}")


@kb.command("show")
@click.argument("ident")
@json_option
def show(ident: str, as_json: bool) -> None:
    """One entry with its summary, mechanism, claims (with sources) and relations."""
    base = _open()
    e = base.get(ident)
    if as_json:
        echo_json(
            {
                **e.model_dump(mode="json"),
                "path": base.path_to_root(ident),
                "related": [
                    {"id": r.id, "name": r.name, "distance": d} for r, d in base.related(ident)
                ],
            }
        )
        return
    meta = ", ".join(str(x) for x in (e.authors, e.venue, e.year) if x)
    click.echo(f"{e.name}  [{e.kind.value}]  {meta}")
    if e.title:
        click.echo(f'  "{e.title}"')
    click.echo(f"  in: {' > '.join(reversed(base.path_to_root(ident)[1:]))}")
    for label, text in (("Summary", e.summary), ("Mechanism", e.mechanism)):
        click.echo(
            f"\n{label}:\n" + textwrap.fill(text, 96, initial_indent="  ", subsequent_indent="  ")
        )
    req = [k.replace("_", " ") for k, v in e.requirements.model_dump().items() if v]
    click.echo(f"\nNeeds: {', '.join(req) or 'nothing special'}")
    click.echo(
        f"Applies to: {', '.join(f.value for f in e.applicability.model_families)}"
        f" on {', '.join(t.value for t in e.applicability.tiers) or 'any tier'}"
    )
    click.echo(
        "Advisor: "
        + (
            f"runs it as plan `{e.advisor_action.value}`"
            if e.advisor_action
            else f"advice only ({e.advice_only_reason})"
        )
    )
    if e.claims:
        click.echo("\nClaims (as reported by the source, not measured here):")
        for c in e.claims:
            extra = "; ".join(
                x for x in (f"vs {c.baseline}" if c.baseline else "", c.setting or "") if x
            )
            checked = f"; checked against {c.checked_against}" if c.checked_against else ""
            click.echo(
                f"  - {c.statement()}{' (' + extra + ')' if extra else ''}"
                f"  [{c.source.cite()}{checked}]"
            )
    if e.relations:
        click.echo("\nRelations:")
        for r in e.relations:
            click.echo(f"  - {r.type.value} {r.target}")


@kb.command("tree")
@click.argument("ident", required=False)
@click.option("--entries", "with_entries", is_flag=True, help="List entries under each category.")
@json_option
def tree(ident: str | None, with_entries: bool, as_json: bool) -> None:
    """The taxonomy, with the number of entries in each branch."""
    nodes = _open().tree(ident, with_entries=with_entries)
    if as_json:
        echo_json([n.model_dump() for n in nodes])
        return

    def walk(n, depth: int) -> None:
        label = f"{n.name}  ({n.id}, {n.count})" if n.type == "category" else f"· {n.name} ({n.id})"
        click.echo("  " * depth + label)
        for c in n.children:
            walk(c, depth + 1)

    for n in nodes:
        walk(n, 0)


@kb.command("compare")
@click.argument("ids", nargs=-1, required=True)
@click.option(
    "--format", "fmt", type=click.Choice(["md", "csv", "json"]), default="md", show_default=True
)
@json_option
def compare(ids: tuple[str, ...], fmt: str, as_json: bool) -> None:
    """Entries side by side: attributes, requirements, advisor action and claims."""
    if len(ids) < 2:
        raise click.UsageError("give at least two ids to compare")
    if as_json:  # the same as --format json, like every other command that prints data
        fmt = "json"
    cmp = _open().compare(list(ids))
    click.echo({"md": cmp.to_markdown, "csv": cmp.to_csv, "json": cmp.to_json}[fmt]())


@kb.command("export")
@click.option("--format", "fmt", type=click.Choice(["json", "csv", "bibtex", "md"]), required=True)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write to a file."
)
def export(fmt: str, output: str | None) -> None:
    """The whole knowledge base as JSON, CSV, BibTeX or Markdown."""
    text = _open().export(fmt)
    if output:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


@kb.command("stats")
@json_option
def stats(as_json: bool) -> None:
    """Counts of entries, claims and relations; entries per category and kind."""
    s = _open().stats()
    if as_json:
        echo_json(s)
        return
    click.echo(
        f"entries {s['entries']}  (with sourced claims {s['entries_with_claims']}, "
        f"advisor-executable {s['executable_entries']})"
    )
    click.echo(
        f"claims {s['claims']} (checked against a stored source text {s['claims_checked']})  "
        f"relations {s['relations']}  categories {s['categories']}"
    )
    click.echo("per kind: " + json.dumps(s["per_kind"]))
    click.echo("\nper branch (an entry counts in every top-level branch it is filed under):")
    head = ("branch", "entries", "w/ claims", "w/o", "claims", "checked")
    click.echo(f"  {head[0]:<18} {head[1]:>7} {head[2]:>11} {head[3]:>7} {head[4]:>6} {head[5]:>7}")
    for branch, r in s["per_branch"].items():
        click.echo(
            f"  {branch:<18} {r['entries']:>7} {r['with_claims']:>11} {r['without_claims']:>7} "
            f"{r['claims']:>6} {r['claims_checked']:>7}"
        )
    if s["empty_categories"]:
        click.echo("EMPTY categories: " + ", ".join(s["empty_categories"]))
