"""The knowledge base as a networkx DiGraph: taxonomy edges plus relations between entries.

Nodes are category and entry ids with a ``type`` attribute ('category' or 'entry'); the
taxonomy gives ``contains`` edges (parent category -> child category -> entry) and each
relation gives an edge ``source -> target`` with ``type`` set to the relation type.
Every query is a pure function of the graph.

>>> G = nx.DiGraph()
>>> G.add_node("inference", type="category")
>>> G.add_node("inference.partition", type="category")
>>> G.add_edge("inference", "inference.partition", type="contains")
>>> G.add_node("neurosurgeon", type="entry", families=["CNN"], tiers=["device", "edge"],
...            requirements={"server": True})
>>> G.add_edge("inference.partition", "neurosurgeon", type="contains")
>>> path_to_root(G, "neurosurgeon")
['neurosurgeon', 'inference.partition', 'inference']
>>> sorted(subtree(G, "inference"))
['inference', 'inference.partition', 'neurosurgeon']
"""

from __future__ import annotations

from collections.abc import Iterable

import networkx as nx

from kb.loader import KBData

CONTAINS = "contains"


def build_graph(data: KBData) -> nx.DiGraph:
    """Taxonomy plus relations as one DiGraph."""
    G = nx.DiGraph()
    for c in data.categories:
        G.add_node(c.id, type="category", name=c.name)
    for c in data.categories:
        if c.parent:
            G.add_edge(c.parent, c.id, type=CONTAINS)
    for e in data.entries:
        G.add_node(
            e.id,
            type="entry",
            name=e.name,
            kind=e.kind.value,
            year=e.year,
            families=[f.value for f in e.applicability.model_families],
            tiers=[t.value for t in e.applicability.tiers],
            requirements=e.requirements.model_dump(),
            action=e.advisor_action.value if e.advisor_action else None,
        )
        for cid in e.categories:
            G.add_edge(cid, e.id, type=CONTAINS)
    for e in data.entries:
        for r in e.relations:
            G.add_edge(e.id, r.target, type=r.type.value)
    return G


def _taxonomy_view(G: nx.DiGraph) -> nx.DiGraph:
    return nx.subgraph_view(G, filter_edge=lambda u, v: G.edges[u, v]["type"] == CONTAINS)


def subtree(G: nx.DiGraph, root: str) -> set[str]:
    """The node and everything the taxonomy places below it."""
    return {root} | nx.descendants(_taxonomy_view(G), root)


def path_to_root(G: nx.DiGraph, node: str) -> list[str]:
    """The node, then its first parent, up to a top-level category.

    An entry listed in several categories follows the first one it names.
    """
    T = _taxonomy_view(G)
    path = [node]
    while True:
        parents = list(T.predecessors(path[-1]))
        if not parents:
            return path
        path.append(parents[0])


def related(
    G: nx.DiGraph, node: str, depth: int = 1, types: Iterable[str] | None = None
) -> dict[str, int]:
    """Entries within `depth` relation hops of `node`, in either direction, with their distance.

    >>> G = nx.DiGraph()
    >>> G.add_edge("a", "b", type="extends"); G.add_edge("b", "c", type="improves-on")
    >>> related(G, "a", depth=2)
    {'b': 1, 'c': 2}
    >>> related(G, "a", depth=2, types=["extends"])
    {'b': 1}
    """
    allowed = set(types) if types is not None else None

    def keep(u: str, v: str) -> bool:
        t = G.edges[u, v]["type"]
        return t != CONTAINS and (allowed is None or t in allowed)

    R = nx.subgraph_view(G, filter_edge=keep).to_undirected(as_view=True)
    dist = nx.single_source_shortest_path_length(R, node, cutoff=depth)
    return {n: d for n, d in dist.items() if n != node}


CONSTRAINTS = {
    "no-retraining": "retraining",
    "no-server": "server",
    "no-labelled-data": "labelled_data",
    "no-special-hardware": "special_hardware",
}


def applicable(
    G: nx.DiGraph,
    family: str | None = None,
    tier: str | None = None,
    constraints: Iterable[str] = (),
) -> list[str]:
    """Entry ids that apply to a model family and tier and meet every constraint.

    Constraints are names from `CONSTRAINTS` (e.g. 'no-retraining').

    >>> G = nx.DiGraph()
    >>> G.add_node("x", type="entry", families=["CNN"], tiers=["device"],
    ...            requirements={"retraining": True})
    >>> G.add_node("y", type="entry", families=["any"], tiers=["device", "edge"],
    ...            requirements={"retraining": False})
    >>> applicable(G, family="CNN", tier="device")
    ['x', 'y']
    >>> applicable(G, family="CNN", constraints=["no-retraining"])
    ['y']
    """
    unknown = [c for c in constraints if c not in CONSTRAINTS]
    if unknown:
        raise ValueError(f"unknown constraint {unknown[0]!r}; use one of {sorted(CONSTRAINTS)}")
    out = []
    for n, a in G.nodes(data=True):
        if a.get("type") != "entry":
            continue
        fams = a.get("families") or ["any"]
        if family and family not in fams and "any" not in fams:
            continue
        if tier and a.get("tiers") and tier not in a["tiers"]:
            continue
        reqs = a.get("requirements") or {}
        if any(reqs.get(CONSTRAINTS[c]) for c in constraints):
            continue
        out.append(n)
    return sorted(out)
