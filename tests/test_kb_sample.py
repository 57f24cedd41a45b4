"""The seeded claim sample: reproducible, and every sampled claim names its source and where."""

from __future__ import annotations

import re

from kb.loader import load
from kb.sample import main, sample_claims

YEAR = re.compile(r"\b(19|20)\d\d\b")


def test_sample_is_seeded_and_sourced(capsys):
    entries = load().entries
    picks = sample_claims(entries, n=20, seed=17)
    assert len(picks) == 20 and len({(p.entry_id, p.index) for p in picks}) == 20
    assert picks == sample_claims(entries, n=20, seed=17)
    assert picks != sample_claims(entries, n=20, seed=18)
    for p in picks:
        src = p.claim.source
        assert src.paper and YEAR.search(src.paper), (p.entry_id, src.paper)
        assert src.location, (p.entry_id, p.claim.metric)
    assert main(["--n", "20", "--seed", "17"]) == 0
    out = capsys.readouterr().out
    print(out)  # the audit list, visible with `pytest -s`
    assert out.startswith("20 of ") and out.count("source: ") == 20


def test_checked_sample_names_the_text_it_was_checked_in(capsys):
    picks = sample_claims(load().entries, n=20, seed=17, checked_only=True)
    assert len(picks) == 20 and all(p.claim.checked_against for p in picks)
    assert main(["--checked"]) == 0
    assert "20 of 20 sampled claims record the source text" in capsys.readouterr().out
