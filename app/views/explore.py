"""Explore: the taxonomy, full-text search with facets, entry pages, relations and compare."""

from __future__ import annotations

import hashlib

import pandas as pd
import streamlit as st

from app import charts, ui

KINDS = [
    "technique",
    "system",
    "framework",
    "library",
    "hardware",
    "benchmark",
    "application",
    "challenge",
]
FAMILIES = ["CNN", "RNN", "Transformer", "MLP", "GNN"]
TIERS = ["device", "edge", "cloud"]
ANY = "(any)"


@st.cache_data(show_spinner=False)
def _search(
    text: str,
    category: str | None,
    kind: str | None,
    since: int | None,
    family: str | None,
    tier: str | None,
    executable: bool | None,
) -> list[dict]:
    hits = ui.knowledge_base().search(
        text,
        category=category,
        kind=kind,
        since=since,
        model_family=family,
        tier=tier,
        executable=executable,
        limit=200,
    )
    return [h.model_dump() for h in hits]


@st.cache_data(show_spinner=False)
def _tree() -> list[dict]:
    return [n.model_dump() for n in ui.knowledge_base().tree()]


@st.cache_data(show_spinner=False)
def _entry_names() -> dict[str, str]:
    return {e.id: e.name for e in ui.knowledge_base().entries}


def _taxonomy_path(tree: list[dict]) -> str | None:
    """One selectbox per level of the taxonomy; returns the deepest category chosen."""
    chosen: str | None = None
    level, depth = tree, 0
    while level:
        cats = [n for n in level if n["type"] == "category"]
        if not cats:
            break
        by_id = {n["id"]: n for n in cats}
        pick = st.selectbox(
            "Branch" if depth == 0 else "↳ sub-branch",
            [ANY, *by_id],
            format_func=lambda i, b=by_id: i if i == ANY else f"{b[i]['name']} ({b[i]['count']})",
            key=f"tax_{depth}_{chosen or 'root'}",
        )
        if pick == ANY:
            break
        chosen = pick
        level, depth = by_id[pick]["children"], depth + 1
    return chosen


def _outline(tree: list[dict], depth: int = 0) -> list[str]:
    """The taxonomy as nested Markdown bullets with entry counts."""
    lines: list[str] = []
    for n in tree:
        if n["type"] != "category":
            continue
        lines.append(f"{'    ' * depth}- **{n['name']}** ({n['count']}) `{n['id']}`")
        lines.extend(_outline(n["children"], depth + 1))
    return lines


def _facets() -> dict:
    with st.sidebar:
        st.subheader("Taxonomy")
        category = _taxonomy_path(_tree())
        st.subheader("Facets")
        kind = st.selectbox("Kind", [ANY, *KINDS], key="f_kind")
        since = st.number_input(
            "Published since (year)",
            min_value=1980,
            max_value=2030,
            value=None,
            step=1,
            key="f_since",
            placeholder="any year",
        )
        family = st.selectbox("Model family", [ANY, *FAMILIES], key="f_family")
        tier = st.selectbox("Tier", [ANY, *TIERS], key="f_tier")
        run = st.radio(
            "Advisor",
            ["any", "executable", "advice only"],
            key="f_exec",
            help="Executable: the advisor runs this technique as a plan. "
            "Advice only: described, cited, not executed here.",
        )
    return {
        "category": category,
        "kind": None if kind == ANY else kind,
        "since": int(since) if since else None,
        "family": None if family == ANY else family,
        "tier": None if tier == ANY else tier,
        "executable": {"any": None, "executable": True, "advice only": False}[run],
    }


# Column layouts for the wide tables: widths in pixels that add up to the ~930 px the main
# column has in a 1400 px window (wide layout, sidebar open), so nothing needs horizontal
# scrolling; long text shows in full on hover. Missing values show as "—", never "None".
RESULT_COLUMNS = {
    "id": st.column_config.TextColumn("id", width=120, pinned=True),
    "name": st.column_config.TextColumn("name", width=190),
    "kind": st.column_config.TextColumn("kind", width=80),
    "year": st.column_config.NumberColumn("year", width=55, format="%d"),
    "categories": st.column_config.TextColumn("categories", width=150),
    "advisor": st.column_config.TextColumn(
        "advisor", width=95, help="The advisor plan that runs it, or 'advice only'."
    ),
    "match": st.column_config.TextColumn("match", width=240),
}
CLAIM_COLUMNS = {
    "metric": st.column_config.TextColumn("metric", width=230, pinned=True),
    "figure": st.column_config.TextColumn(
        "figure", width=130, help="Value and unit; '—' where the source states no figure."
    ),
    "context": st.column_config.TextColumn(
        "context", width=200, help="Baseline it is compared with, and the setting."
    ),
    "source": st.column_config.TextColumn(
        "source", width=200, help="Paper or document, where in it, and which version."
    ),
    "checked against": st.column_config.TextColumn(
        "checked against",
        width=170,
        help="The stored source text this figure was checked against; '—': not yet checked.",
    ),
}
MISSING = "—"


def _results(hits: list[dict]) -> None:
    if not hits:
        st.warning("No entries match. Loosen a facet or try other words.")
        return
    frame = pd.DataFrame(
        [
            {
                "id": h["id"],
                "name": h["name"],
                "kind": h["kind"],
                "year": h["year"],
                "categories": ", ".join(h["categories"]),
                "advisor": h["advisor_action"] or "advice only",
                "match": h["snippet"],
            }
            for h in hits
        ]
    ).astype({"year": "Int64"})
    st.dataframe(
        frame,
        hide_index=True,
        height=min(400, 38 + 35 * len(hits)),
        column_config=RESULT_COLUMNS,
        placeholder=MISSING,
    )


def _claim_line(c) -> str:
    extra = "; ".join(x for x in (f"vs {c.baseline}" if c.baseline else "", c.setting or "") if x)
    checked = f" Checked against: {c.checked_against}." if c.checked_against else ""
    return (
        f"**{c.statement()}**"
        + (f" ({extra})" if extra else "")
        + f" — *{c.source.cite()}*.{checked}"
    )


def _claims_frame(claims) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "metric": c.metric,
                "figure": c.figure() or None,
                "context": "; ".join(
                    x for x in (f"vs {c.baseline}" if c.baseline else "", c.setting or "") if x
                )
                or None,
                "source": c.source.cite(),
                "checked against": c.checked_against,
            }
            for c in claims
        ]
    )


def _entry(entry_id: str) -> None:
    base = ui.knowledge_base()
    e = base.get(entry_id)
    meta = ", ".join(str(x) for x in (e.authors, e.venue, e.year) if x)
    st.subheader(f"{e.name}  ·  {e.kind.value}")
    path = " › ".join(base.category(c).name for c in reversed(base.path_to_root(entry_id)[1:]))
    st.caption(f"{path}  ·  {meta}" if meta else path)
    if e.title:
        st.markdown(f"*{e.title}*" + (f" — [{e.url}]({e.url})" if e.url else ""))
    st.markdown(f"**Summary.** {e.summary}")
    st.markdown(f"**Mechanism.** {e.mechanism}")
    needs = [k.replace("_", " ") for k, v in e.requirements.model_dump().items() if v]
    tiers = ", ".join(t.value for t in e.applicability.tiers) or "any tier"
    c1, c2, c3 = st.columns(3)
    c1.markdown(f"**Needs:** {', '.join(needs) or 'nothing special'}")
    c2.markdown(
        f"**Applies to:** {', '.join(f.value for f in e.applicability.model_families)} on {tiers}"
    )
    c3.markdown(
        "**Advisor:** "
        + (
            f"runs it as plan `{e.advisor_action.value}`"
            if e.advisor_action
            else f"advice only — {e.advice_only_reason}"
        )
    )
    if e.claims:
        st.markdown("**Claims** — reported by the source, not measured here")
        st.dataframe(
            _claims_frame(e.claims),
            hide_index=True,
            column_config=CLAIM_COLUMNS,
            placeholder=MISSING,
        )
        with st.expander("Claims in full (untruncated text)"):
            st.markdown("\n".join(f"- {_claim_line(c)}" for c in e.claims))
    related = base.related(entry_id, depth=1)
    if related:
        st.markdown(
            "**Related entries:** " + " · ".join(ui.entry_link(r.id, r.name) for r, _ in related)
        )
    st.button("Add to comparison", key="add_compare", on_click=_add_to_compare, args=(entry_id,))
    depth = st.slider("Relation graph depth (hops)", 1, 3, 1, key="graph_depth")
    st.graphviz_chart(charts.relation_dot(base, entry_id, depth=depth))


def _compare(names: dict[str, str]) -> None:
    st.header("Compare")
    ids = st.multiselect(
        "Entries to compare (two or more)",
        list(names),
        format_func=lambda i: f"{names[i]} ({i})",
        key="compare_ids",
    )
    if len(ids) < 2:
        st.info("Pick at least two entries to compare them side by side.")
        return
    base = ui.knowledge_base()
    comparison = base.compare(ids)
    frame = charts.comparison_frame(comparison)
    st.dataframe(
        frame,
        column_config={
            "_index": st.column_config.TextColumn("attribute", width="small", pinned=True),
            **{col: st.column_config.TextColumn(col, width="medium") for col in frame.columns},
        },
        placeholder=MISSING,
    )
    c1, c2, c3, c4 = st.columns(4)
    c1.download_button("Download CSV", comparison.to_csv(), "comparison.csv", "text/csv")
    c2.download_button(
        "Download Markdown", comparison.to_markdown(), "comparison.md", "text/markdown"
    )
    c3.download_button(
        "Download BibTeX", base.export("bibtex", ids=ids), "comparison.bib", "application/x-bibtex"
    )
    c4.download_button("Download JSON", comparison.to_json(), "comparison.json", "application/json")


def _add_to_compare(entry_id: str) -> None:
    picked = list(ui.state_get("compare_ids", []))
    if entry_id not in picked:
        st.session_state["compare_ids"] = [*picked, entry_id]


def _remember_entry(key: str) -> None:
    """Put the picked entry in the URL, so the page can be shared or reloaded."""
    st.query_params["entry"] = st.session_state[key]


def main() -> None:
    st.title("Explore the Edge DL knowledge base")
    stats: dict = {}
    with ui.guarded("Opening the knowledge base"):
        stats = ui.knowledge_base().stats()
    if not stats:
        return
    for note in ui.knowledge_base().notices:
        st.info(note)
    since = stats.get("per_branch", {}).get("since-survey", {})
    st.caption(
        f"{stats['entries']} entries · {stats['claims']} sourced claims, "
        f"{stats['claims_checked']} checked against a stored source text · "
        f"{stats['categories']} categories — from the survey “Convergence of Edge "
        "Computing and Deep Learning” (Wang et al., IEEE COMST 2020) and its sources"
        + (
            f", and {since['entries']} entries on work since the survey (2020-2026)."
            if since.get("entries")
            else "."
        )
    )
    with st.expander("The taxonomy at a glance (pick a branch in the sidebar to filter)"):
        st.markdown("\n".join(_outline(_tree())))
    facets = _facets()
    text = st.text_input("Search", key="q", placeholder="e.g. partition latency mobile cloud")
    hits: list[dict] = []
    with ui.guarded("Searching"):
        hits = _search(text, **facets)
        _results(hits)
    names = _entry_names()
    # A new search or facet shows its top hit; a link (?entry=id) or a pick shows that entry.
    signature = hashlib.sha1(repr((text, sorted(facets.items()))).encode()).hexdigest()[:12]
    if ui.state_get("search_sig", signature) != signature:
        st.query_params.pop("entry", None)
    st.session_state["search_sig"] = signature
    wanted = st.query_params.get("entry")
    options = [h["id"] for h in hits]
    if wanted in names and wanted not in options:
        options.insert(0, wanted)
    st.header("Entry")
    if options:
        chosen = st.selectbox(
            "Open an entry",
            options,
            index=options.index(wanted) if wanted in options else 0,
            format_func=lambda i: f"{names.get(i, i)} ({i})",
            key=f"entry_pick_{signature}",
            on_change=_remember_entry,
            args=(f"entry_pick_{signature}",),
        )
        with ui.guarded(f"Showing entry {chosen!r}"):
            _entry(chosen)
    else:
        st.info("Search or pick a branch to open an entry.")
    with ui.guarded("Comparing"):
        _compare(names)


main()
