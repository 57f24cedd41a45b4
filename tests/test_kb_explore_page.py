"""The Explore page shows the 'since the survey' branch, and its wide tables are laid out to be
read at about 1400 px: column widths set, missing values shown as '—' rather than 'None'."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

PAGE = Path(__file__).resolve().parent.parent / "app" / "views" / "explore.py"


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEDL_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "edgedl-cache"))
        yield


def run(**query: str) -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.query_params.update(query)
    at = at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def table(at: AppTest, column: str):
    for df in at.dataframe:
        if column in df.value.columns:
            return df
    raise AssertionError(f"no table with column {column!r}")


def layout(df) -> dict:
    """The configuration Streamlit sends to the browser for each shown column of a table."""
    cols = json.loads(df.proto.columns)
    return {k: v for k, v in cols.items() if not v.get("hidden")}


def test_branch_in_sidebar_and_caption():
    at = run()
    caption = " ".join(c.value for c in at.caption)
    assert "entries on work since the survey (2020-2026)" in caption
    assert "checked against a stored source text" in caption
    branch = at.sidebar.selectbox[0]
    assert "Since the survey (2020-2026) (" in " ".join(branch.options)
    branch.set_value("since-survey").run()
    assert not at.exception
    hits = table(at, "match").value
    assert {"gptq", "llama-cpp", "mcunetv2", "hailo-8"} <= set(hits["id"])
    assert all(y >= 2020 for y in hits["year"])


def test_results_table_is_laid_out_and_has_no_none_cells():
    at = run()
    at.sidebar.number_input(key="f_since").set_value(2021).run()
    df = table(at, "match")
    cols = layout(df)
    assert cols["id"]["pinned"] is True
    widths = [c["width"] for c in cols.values()]
    assert all(isinstance(w, int) for w in widths) and sum(widths) <= 940  # fits 1400 px
    assert df.proto.placeholder == "—"
    assert str(df.value["year"].dtype) == "Int64"  # numbers, not 'None' strings
    assert not (df.value.astype(str) == "None").any().any()


def test_claims_table_shows_sources_checks_and_figureless_claims():
    at = run(entry="scaffold")  # its claim is stated without a figure
    claims = table(at, "checked against")
    frame = claims.value
    assert frame["figure"].isna().all() and frame["checked against"].notna().all()
    assert sum(c["width"] for c in layout(claims).values()) <= 940
    assert not (frame.astype(str) == "None").any().any()
    assert claims.proto.placeholder == "—"
    at = run(entry="adadeep")  # two versions of the paper, different figures
    sources = " ".join(table(at, "checked against").value["source"])
    assert "version: MobiSys 2018" in sources and "2006.04432v1" in sources
    full = " ".join(m.value for m in at.markdown)
    assert "Checked against: arXiv 2006.04432v1 abstract" in full  # the untruncated list
