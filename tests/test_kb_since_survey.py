"""The 'since the survey' branch (2020-2026): size, sourced claims, typed relations, and the
doors that show it (kb stats, kb search --since, kb tree)."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from app.cli import cli
from kb import KnowledgeBase

BRANCH = "since-survey"
YEAR = re.compile(r"\b(19|20)\d\d\b")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> KnowledgeBase:
    return KnowledgeBase.open(cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def branch(base) -> list:
    return [e for e in base.entries if any(c.startswith(BRANCH) for c in e.categories)]


def test_branch_has_forty_entries_from_2020_on(branch):
    assert len(branch) >= 40
    assert all(e.year is not None and 2020 <= e.year <= 2026 for e in branch), [
        (e.id, e.year) for e in branch if not e.year or not 2020 <= e.year <= 2026
    ]


def test_every_entry_has_a_sourced_checked_claim(branch):
    for e in branch:
        assert e.claims, e.id
        for c in e.claims:
            assert YEAR.search(c.source.paper), (e.id, c.source.paper)  # venue or issuer + year
            assert c.source.location, (e.id, c.metric)
            assert c.checked_against, (e.id, c.metric)


def test_every_entry_relates_to_a_survey_entry(base, branch):
    ids = {e.id for e in branch}
    for e in branch:
        survey_targets = [r for r in e.relations if r.target not in ids]
        assert survey_targets, f"{e.id} relates to no survey entry"
        assert all(base.exists(r.target) for r in e.relations)


def test_branch_covers_the_topics(branch):
    cats = {c for e in branch for c in e.categories}
    for leaf in (
        "llm-compression",
        "llm-runtimes",
        "speculative-decoding",
        "split-llm",
        "tinyml",
        "split-early-exit",
        "edge-hardware",
        "federated",
        "compact-models",
    ):
        assert f"{BRANCH}.{leaf}" in cats


def test_stats_count_the_branch(base, branch):
    s = base.stats()
    row = s["per_branch"][BRANCH]
    assert row["entries"] == len(branch)
    assert row["with_claims"] == len(branch) and row["without_claims"] == 0
    assert row["claims_checked"] == row["claims"] >= len(branch)
    assert s["claims_checked"] >= row["claims_checked"]
    assert sum(r["entries"] for r in s["per_branch"].values()) >= s["entries"]


def test_cli_stats_shows_the_branch():
    r = CliRunner().invoke(cli, ["kb", "stats"])
    assert r.exit_code == 0, r.output
    line = next(ln for ln in r.output.splitlines() if ln.strip().startswith(BRANCH))
    assert int(line.split()[1]) >= 40
    assert "checked against a stored source text" in r.output
    data = json.loads(CliRunner().invoke(cli, ["kb", "stats", "--json"]).output)
    assert data["per_branch"][BRANCH]["entries"] >= 40


def test_search_since_2021_finds_the_new_work():
    r = CliRunner().invoke(cli, ["kb", "search", "--since", "2021", "--limit", "200", "--json"])
    assert r.exit_code == 0, r.output
    hits = json.loads(r.output)
    assert hits and all(h["year"] >= 2021 for h in hits)
    ids = {h["id"] for h in hits}
    assert {"gptq", "awq", "llama-cpp", "speculative-decoding", "mcunetv2"} <= ids
    assert "neurosurgeon" not in ids  # 2017
    r = CliRunner().invoke(cli, ["kb", "search", "quantization", "--since", "2021", "--json"])
    assert {"gptq", "awq"} <= {h["id"] for h in json.loads(r.output)}


def test_tree_shows_the_branch():
    r = CliRunner().invoke(cli, ["kb", "tree", BRANCH, "--entries"])
    assert r.exit_code == 0, r.output
    assert "Since the survey (2020-2026)" in r.output
    assert "· GPTQ (gptq)" in r.output
    assert "TinyML on microcontrollers" in r.output
