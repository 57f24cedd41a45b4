"""The knowledge-base API and store over the bundled data."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

import kb
from kb import KnowledgeBase
from kb.errors import UnknownIdError
from kb.store import db_path_for

# The systems the survey names for each branch (issue 2, item 4): each must be findable by name.
NAMED_SYSTEMS = [
    "DeepX",
    "DeepMon",
    "NetAdapt",
    "AMC",
    "HAQ",
    "Once-for-All",
    "Neurosurgeon",
    "JointDNN",
    "DADS",
    "JALAD",
    "MoDNN",
    "MeDNN",
    "DeepThings",
    "BranchyNet",
    "DDNN",
    "Edgent",
    "SPINN",
    "Cachier",
    "FoggyCache",
    "DeepCache",
    "Precog",
    "Mainstream",
    "NoScope",
    "Chameleon",
    "NestDNN",
    "KubeEdge",
    "EdgeX",
    "FedAvg",
    "TensorFlow Lite",
    "Core ML",
    "ncnn",
    "MNN",
    "ONNX Runtime",
    "Edge TPU",
    "Jetson",
]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> KnowledgeBase:
    return KnowledgeBase.open(cache_dir=tmp_path_factory.mktemp("cache"))


def test_public_surface():
    assert kb.__all__ == [
        "KnowledgeBase",
        "SearchHit",
        "Comparison",
        "Entry",
        "KBError",
        "DataError",
        "UnknownIdError",
    ]


def test_stats_meet_the_bar(base):
    s = base.stats()
    assert s["entries"] >= 150
    assert s["entries_with_claims"] >= 60
    assert s["empty_categories"] == []
    assert all(n > 0 for n in s["per_category"].values())


def test_every_relation_target_exists(base):
    ids = {e.id for e in base.entries}
    for e in base.entries:
        for r in e.relations:
            assert r.target in ids, (e.id, r.target)


def test_fulltext_finds_neurosurgeon(base):
    ids = [h.id for h in base.search("partition latency mobile cloud", limit=10)]
    assert "neurosurgeon" in ids


def test_early_exit_search(base):
    ids = [h.id for h in base.search("early exit", limit=30)]
    for want in ("branchynet", "edgent", "ddnn"):
        assert want in ids


@pytest.mark.parametrize("name", NAMED_SYSTEMS)
def test_named_system_found_by_name(base, name):
    hits = base.search(name, limit=10)
    assert any(name.lower() in h.name.lower() for h in hits), [h.name for h in hits]


def test_facets(base):
    hits = base.search("", category="inference.early-exit", limit=200)
    assert hits and all(
        base.path_to_root(h.id)[-1] == "inference"
        or any(c.startswith("inference.early-exit") for c in h.categories)
        for h in hits
    )
    assert all(h.kind == "system" for h in base.search("", kind="system", limit=300))
    assert all((h.year or 0) >= 2019 for h in base.search("", since=2019, limit=300))
    ex = base.search("", executable=True, limit=300)
    assert ex and all(h.advisor_action for h in ex)
    with pytest.raises(UnknownIdError):
        base.search("x", category="no.such")


def test_search_survives_fts_syntax(base):
    base.search('"unbalanced AND (quote* NEAR')  # must not raise
    assert base.search("") != []


def test_get_unknown_suggests(base):
    with pytest.raises(UnknownIdError, match="neurosurgeon"):
        base.get("neurosurgen")


def test_tree_and_paths(base):
    roots = base.tree()
    assert {r.id for r in roots} >= {
        "applications",
        "inference",
        "edge-computing",
        "training",
        "optimizing-edge",
        "challenges",
    }
    assert base.path_to_root("neurosurgeon")[-1] == "inference"
    sub = base.tree("inference.early-exit", with_entries=True)[0]
    assert {c.id for c in sub.children} >= {"branchynet", "edgent"}


def test_related(base):
    rel = base.related("edgent", depth=2)
    assert rel and all(d in (1, 2) for _, d in rel)


def test_applicable(base):
    cnn_dev = {
        e.id for e in base.applicable(family="CNN", tier="device", constraints=["no-retraining"])
    }
    assert cnn_dev
    for i in cnn_dev:
        assert not base.get(i).requirements.retraining


def test_compare_formats(base):
    cmp = base.compare(["neurosurgeon", "dads", "edgent"])
    md = cmp.to_markdown()
    assert "| attribute | Neurosurgeon" in md
    rows = list(csv.reader(io.StringIO(cmp.to_csv())))
    assert rows[0][0] == "attribute" and len(rows[0]) == 4
    assert json.loads(cmp.to_json())["ids"] == ["neurosurgeon", "dads", "edgent"]


def test_exports_parse(base):
    n = len(base.entries)
    assert len(json.loads(base.export("json"))) == n
    assert len(list(csv.DictReader(io.StringIO(base.export("csv"))))) == n
    bib = base.export("bibtex")
    records = re.findall(r"^@(\w+)\{([^,]+),", bib, flags=re.M)
    assert len(records) == n and len({r[1] for r in records}) == n
    assert bib.count("{") == bib.count("}") + bib.count("\\}") - bib.count("\\{")
    assert base.export("md").count("\n## ") == n


def test_rebuild_is_atomic_and_keyed_by_digest(tmp_path):
    a = KnowledgeBase.open(cache_dir=tmp_path)
    assert a.db_path == db_path_for(a.data.digest, tmp_path)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".kb-")] == []
    b = KnowledgeBase.open(cache_dir=tmp_path)  # reuses the database, no YAML parsing
    assert b._data is None and b.get("neurosurgeon").name == "Neurosurgeon"
