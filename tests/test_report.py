"""advisor.report.renderers / advisor.report.charts: self-contained HTML, Markdown and JSON of
an Advice, and `edgedl report` through click's CliRunner."""

from __future__ import annotations

import doctest
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest
from _advice_fixtures import EVIL, make_advice
from click.testing import CliRunner

import advisor.report.blocks
import advisor.report.charts
import advisor.report.renderers
from advisor.advice import Advice
from advisor.errors import ReportError
from advisor.report.renderers import (
    load_advice,
    md_escape,
    render_html,
    render_json,
    render_markdown,
    write_report,
)
from advisor.runs import RunStore
from app.cli import cli

VOID = {"meta", "br", "hr", "img", "input", "link", "wbr", "col", "area", "base", "source"}
SVG_VOID = {"line", "polyline", "path"}  # self-closed in our SVG: <line .../>
SECTIONS = (
    "Decision summary",
    "Inputs",
    "Environment and calibration",
    "Candidate plans",
    "Rejected and skipped plans",
    "Per-layer profile",
    "Fidelity",
    "Plan details",
    "Techniques cited",
    "Reproduce",
)


class _Checker(HTMLParser):
    """Records every start tag and checks that tags close in order (a real parse, no regex)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse(doc: str) -> _Checker:
    checker = _Checker()
    checker.feed(doc)
    checker.close()
    assert checker.errors == [] and checker.stack == [], (checker.errors, checker.stack)
    return checker


def svgs(doc: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", doc, flags=re.S)


@pytest.fixture
def advice() -> Advice:
    return make_advice()


@pytest.fixture
def evil() -> Advice:
    return make_advice(EVIL)


def test_html_parses_and_holds_every_plan_and_section(advice):
    doc = render_html(advice)
    checker = parse(doc)
    text = " ".join(checker.text)
    for p in advice.plans:
        assert p.id in text
    for title in SECTIONS:
        assert title in text
    assert [t for t, _ in checker.tags].count("svg") == 3
    for svg in svgs(doc):
        ET.fromstring(svg)  # every chart is well-formed XML


def test_html_is_self_contained(advice):
    doc = render_html(advice)
    checker = parse(doc)
    tags = {t for t, _ in checker.tags}
    assert not tags & {"script", "link", "img", "iframe", "object", "embed"}
    for tag, attrs in checker.tags:
        assert "src" not in attrs, tag
        href = attrs.get("href")
        assert href is None or href.startswith("#"), href  # only in-page anchors
    assert "@import" not in doc and "url(" not in doc
    assert "<style>" in doc and "Content-Security-Policy" in doc


def test_report_content(advice):
    for doc in (render_html(advice), render_markdown(advice)):
        assert "Recommended: Split after conv2 (plan partition.chain" in doc
        assert "predicted_target e2e (ms)" in doc and "measured_host e2e (ms)" in doc
        assert "transfer predicted_target (ms)" in doc
        assert "<svg" in doc and "Latency per stage" in doc and "Per-layer latency" in doc
        assert "Neurosurgeon" in doc and "Kang et al., ASPLOS, 2017" in doc
        assert advice.command in doc
        assert "no cloud target given; add --cloud" in doc.replace("\\-", "-")
        assert "40.5" in doc and "Test CPU" in doc  # calibration and fingerprint


def test_no_plan_met_the_target():
    a = make_advice(recommended=False)
    for doc in (render_html(a), render_markdown(a)):
        assert "No plan met the target" in doc and "Closest plans" in doc
        assert "predicted 7.5 ms misses the 5 ms target" in doc


def test_model_names_are_escaped_in_html(evil):
    doc = render_html(evil)
    checker = parse(doc)
    assert "script" not in {t for t, _ in checker.tags}
    assert "<script" not in doc.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in doc
    text = " ".join(checker.text)
    assert f"conv1{EVIL}" in text or f"features.0{EVIL}" in text  # shown, as text
    assert f"Split after conv2 {EVIL}" in text
    for svg in svgs(doc):
        root = ET.fromstring(svg)
        assert not [e for e in root.iter() if e.tag.endswith("script")]


def test_model_names_are_escaped_in_markdown(evil):
    doc = render_markdown(evil)
    assert "<script" not in doc.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in doc
    for svg in svgs(doc):
        ET.fromstring(svg)


def test_markdown_tables_survive_pipes_and_backticks():
    a = make_advice()
    bad = "a | b `code` *x* [l](http://e) \n| row"
    plans = [a.plans[0].model_copy(update={"title": bad}), *a.plans[1:]]
    a = a.model_copy(update={"plans": plans})
    doc = render_markdown(a)
    unescaped = re.compile(r"(?<!\\)\|")
    for block in doc.split("\n\n"):
        lines = block.splitlines()
        if not lines or not lines[0].startswith("| "):
            continue
        widths = {len(unescaped.findall(line)) for line in lines}
        assert len(widths) == 1, block
    assert md_escape(bad) in doc and "`code`" not in doc


def test_markdown_renders_to_the_same_tables_and_no_live_tags(evil):
    """Render the Markdown with a CommonMark parser (HTML allowed, as lenient viewers do)."""
    markdown_it = pytest.importorskip("markdown_it")
    md = render_markdown(evil)
    out = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").render(md)
    checker = parse(out)
    tags = [t for t, _ in checker.tags]
    assert "script" not in tags and tags.count("svg") == 3
    assert tags.count("table") == render_html(evil).count("<table>")
    text = " ".join(checker.text)
    assert f"Split after conv2 {EVIL}" in text and all(p.id in text for p in evil.plans)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a|b", "a\\|b"),
        ("`x`", "\\`x\\`"),
        ("<b>", "&lt;b&gt;"),
        ("a\nb", "a b"),
        ("# title", "\\# title"),
        ("12. x", "12\\. x"),
        ("- x", "\\- x"),
        ("x_y*z _a_", "x_y\\*z \\_a\\_"),
        ("a & b", "a &amp; b"),
        ("> q", "&gt; q"),
        ("-0.5", "-0.5"),
        ("1.5 ms", "1.5 ms"),
        ("---", "\\---"),
    ],
)
def test_md_escape(text, expected):
    assert md_escape(text) == expected


def test_json_round_trips_and_matches_the_schema(evil):
    text = render_json(evil)
    again = Advice.model_validate_json(text)
    assert again == evil
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(json.loads(text), Advice.model_json_schema())


def test_json_never_carries_the_agent_token():
    a = make_advice()
    a = a.model_copy(update={"request": a.request.model_copy(update={"agent_token": "s3cr3t"})})
    assert "s3cr3t" not in render_json(a)


def test_empty_advice_still_renders():
    a = make_advice().model_copy(
        update={"plans": [], "layers": [], "recommended": None, "pareto": [], "command": ""}
    )
    doc = render_html(a)
    parse(doc)
    assert "no per-layer profile" in doc.lower() and "No command was recorded" in doc
    assert len(svgs(doc)) == 2  # the stage and Pareto charts say "no data"
    render_markdown(a)


@pytest.mark.parametrize(
    ("name", "check"),
    [
        ("r.html", lambda t: t.startswith("<!DOCTYPE html>")),
        ("r.htm", lambda t: t.startswith("<!DOCTYPE html>")),
        ("r.md", lambda t: t.startswith("# EdgeDL Advisor report")),
        ("r.json", lambda t: json.loads(t)["recommended"] == "partition.chain"),
    ],
)
def test_write_report_infers_the_format(tmp_path, advice, name, check):
    path = write_report(advice, tmp_path / "sub" / name)
    assert check(path.read_text(encoding="utf-8"))


def test_a_markdown_file_links_its_charts_as_svg_files_beside_it(tmp_path, advice):
    """GitHub and many other Markdown viewers do not draw inline SVG: the file links them."""
    import xml.etree.ElementTree as ET

    path = write_report(advice, tmp_path / "my report.md")
    text = path.read_text(encoding="utf-8")
    files = sorted((tmp_path / "my report.charts").glob("chart-*.svg"))
    assert files and "<svg" not in text
    for i, f in enumerate(files, 1):
        assert f"![chart {i}](<my report.charts/chart-{i}.svg>)" in text
        assert ET.parse(f).getroot().tag.endswith("svg")
    assert "<svg" in render_markdown(advice)  # in memory (the app's download): one file


def test_write_report_errors(tmp_path, advice):
    with pytest.raises(ReportError, match=r"name it \.html, \.md or \.json"):
        write_report(advice, tmp_path / "r.txt")
    with pytest.raises(ReportError, match="unknown report format 'pdf'"):
        write_report(advice, tmp_path / "r.html", fmt="pdf")
    assert write_report(advice, tmp_path / "r.txt", fmt="md").read_text().startswith("# ")


def test_load_advice_errors(tmp_path, advice):
    bad = tmp_path / "bad.json"
    bad.write_text('{"model": 3}')
    with pytest.raises(ReportError, match="is not an advice JSON file") as err:
        load_advice(bad)
    assert "\n" not in str(err.value)
    with pytest.raises(ReportError, match="no such file"):
        load_advice(tmp_path / "missing.json")
    good = tmp_path / "a.json"
    good.write_text(render_json(advice))
    assert load_advice(good) == advice


def test_charts_scale_with_the_data():
    big = make_advice()
    rows = [
        big.layers[i % 4].model_copy(update={"layer": f"block{i}", "name": f"n{i}"})
        for i in range(300)
    ]
    svg = advisor.report.charts.layers_chart_svg(big.model_copy(update={"layers": rows}))
    root = ET.fromstring(svg)
    labels = [
        e for e in root.iter() if e.tag.endswith("text") and (e.text or "").startswith("block")
    ]
    assert 0 < len(labels) <= 40  # every layer drawn, labels thinned
    assert len([e for e in root.iter() if e.tag.endswith("rect")]) >= 600


def test_doctests():
    for mod in (advisor.report.charts, advisor.report.renderers, advisor.report.blocks):
        result = doctest.testmod(mod)
        assert result.failed == 0 and result.attempted > 0


# --- CLI -----------------------------------------------------------------------------------


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_cli_report_from_json_and_run_id(tmp_path, advice):
    src = tmp_path / "advice.json"
    src.write_text(render_json(advice))
    out = tmp_path / "r.html"
    r = run("report", str(src), "-o", str(out))
    assert r.exit_code == 0, r.output
    parse(out.read_text())
    db = tmp_path / "runs.sqlite"
    run_id = RunStore(db).save(advice)
    r = run("report", run_id, "--format", "md", "--db", str(db))
    assert r.exit_code == 0 and r.output.startswith("# EdgeDL Advisor report")
    r = run("report", run_id[:6], "--format", "json", "--db", str(db))
    assert r.exit_code == 0 and Advice.model_validate_json(r.output) == advice


@pytest.mark.parametrize(
    ("make_arg", "message"),
    [
        (lambda p: "0123456789ab", "unknown run id '0123456789ab'"),
        (lambda p: str(p / "missing.json"), "no such file"),
        (lambda p: str(p / "bad.json"), "is not an advice JSON file"),
    ],
)
def test_cli_report_bad_input_exits_2_with_one_line(tmp_path, make_arg, message):
    (tmp_path / "bad.json").write_text("{not json")
    RunStore(tmp_path / "runs.sqlite")  # an empty store: `report --db` never creates one
    r = run("report", make_arg(tmp_path), "--db", str(tmp_path / "runs.sqlite"))
    assert r.exit_code == 2
    assert message in r.output and len(r.output.strip().splitlines()) == 1
    assert "Traceback" not in r.output


@pytest.mark.slow
def test_report_of_a_real_advice_on_the_digits_cnn(tmp_path, monkeypatch):
    """advise() end to end (runs=3), then every format of its report, and the run store."""
    from advisor import AdviceRequest, advise

    monkeypatch.setenv("EDGEDL_CACHE_DIR", str(tmp_path / "cache"))
    a = advise(
        AdviceRequest(
            model="digits_cnn",
            device="rpi4",
            edge="edge_t4",
            link="wifi",
            latency_ms=5,
            runs=3,
            out_dir=str(tmp_path / "art"),
        )
    )
    doc = render_html(a)
    text = " ".join(parse(doc).text)
    assert all(p.id in text for p in a.plans) and len(svgs(doc)) == 3
    for svg in svgs(doc):
        ET.fromstring(svg)
    md = render_markdown(a)
    for doc_ in (doc, md):
        assert "Decision summary" in doc_ and a.command and a.command.split()[0] in doc_
    best = a.recommended_plan
    if best is not None:
        assert f"Recommended: {best.title}" in text
        assert f"{best.predicted.ms:.4g}" in text  # the figure as measured, not re-derived
    else:
        assert "No plan met the target" in text
    assert Advice.model_validate_json(render_json(a)) == a
    store = RunStore(tmp_path / "runs.sqlite")
    assert store.get(store.save(a, tmp_path / "art")) == a
