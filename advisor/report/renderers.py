"""Design-review reports of an `Advice`: self-contained HTML, Markdown, JSON.

    render_html(advice)      one HTML file: inline <style>, charts as inline SVG, no script,
                             no external CSS/JS/fonts/images (it opens offline)
    render_markdown(advice)  the same sections in Markdown (charts as inline SVG blocks;
                             write_report puts them beside a .md file as .svg files)
    render_json(advice)      the Advice itself; round-trips through Advice.model_validate_json
    write_report(advice, path, fmt=None)   fmt from the suffix: .html/.htm, .md, .json
    load_advice(path)        an Advice from a JSON file, or ReportError naming what is wrong

The content comes from `advisor.report.content.sections` (blocks of `advisor.report.blocks`);
this module only lays it out and escapes. Every string that can come from the model or the user
(node, tensor, layer and model names, titles, reasons) is escaped: `html.escape` in HTML,
`md_escape` in Markdown, so a model cannot inject markup. The HTML also carries a
Content-Security-Policy that forbids scripts and remote loads, as a second line of defence.

>>> md_escape("<b>a|b</b>")
'&lt;b&gt;a\\\\|b&lt;/b&gt;'
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import ValidationError

from advisor.errors import ReportError
from advisor.report.blocks import (
    Block,
    Bullets,
    Chart,
    Code,
    Heading,
    Para,
)
from advisor.report.content import sections

if TYPE_CHECKING:
    from advisor.advice import Advice

__all__ = [
    "FORMATS",
    "ReportFormat",
    "render_html",
    "render_markdown",
    "render_markdown_with_charts",
    "render_json",
    "render",
    "write_report",
    "load_advice",
    "format_for_path",
    "md_escape",
]

ReportFormat = Literal["html", "md", "json"]
FORMATS: tuple[ReportFormat, ...] = ("html", "md", "json")
_SUFFIXES: dict[str, ReportFormat] = {
    ".html": "html",
    ".htm": "html",
    ".md": "md",
    ".markdown": "md",
    ".json": "json",
}

_CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       margin: 0 auto; max-width: 1180px; padding: 1.5rem; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.25rem; border-bottom: 2px solid #e3e3e8; padding-bottom: .2rem;
     margin-top: 2.2rem; }
h3 { font-size: 1.02rem; margin: 1.3rem 0 .4rem; }
.meta { color: #555; margin-top: 0; }
nav ol { columns: 2; font-size: .92rem; }
.table-wrap { overflow-x: auto; margin: .5rem 0 1rem; }
table { border-collapse: collapse; font-size: .85rem; }
th, td { border: 1px solid #d9d9de; padding: .25rem .5rem; text-align: left;
         vertical-align: top; }
th { background: #f3f3f6; }
td { font-variant-numeric: tabular-nums; overflow-wrap: break-word; max-width: 34rem; }
td:nth-child(2) { min-width: 9rem; }
tr.recommended td { background: #e8f6e8; font-weight: 600; }
tr.rejected td { color: #8a1c1c; }
tr.skipped td { color: #777; }
p.strong { font-size: 1.08rem; font-weight: 700; }
pre { background: #f6f8fa; padding: .7rem; overflow-x: auto; border-radius: 4px; }
.chart { overflow-x: auto; margin: .6rem 0 1rem; }
footer { margin-top: 2.5rem; color: #777; font-size: .8rem; }
"""
_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "script-src 'none'; base-uri 'none'; form-action 'none'"
)


def _title(advice: Advice) -> str:
    return f"EdgeDL Advisor report — {advice.model.name}"


def _meta(advice: Advice) -> str:
    r = advice.request
    where = " + ".join(x for x in (r.device, r.edge, r.cloud) if x)
    return (
        f"Created {advice.created} · targets {where} · latency target {r.latency_ms:g} ms · "
        f"recommended: {advice.recommended or 'none'}"
    )


# --- HTML ------------------------------------------------------------------------------------


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


def _html_block(block: Block) -> str:
    if isinstance(block, Para):
        return (
            f"<p class='strong'>{_e(block.text)}</p>"
            if block.strong
            else f"<p>{_e(block.text)}</p>"
        )
    if isinstance(block, Heading):
        return f"<h3>{_e(block.text)}</h3>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_e(i)}</li>" for i in block.items) + "</ul>"
    if isinstance(block, Code):
        return f"<pre><code>{_e(block.text)}</code></pre>"
    if isinstance(block, Chart):
        return f"<div class='chart'>{block.svg}</div>"  # trusted: escaped in advisor.report.charts
    head = "".join(f"<th scope='col'>{_e(h)}</th>" for h in block.header)
    body = []
    for i, row in enumerate(block.rows):
        cls = block.row_classes[i] if i < len(block.row_classes) else ""
        attr = f" class='{_e(cls)}'" if cls else ""
        body.append(f"<tr{attr}>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>")
    return (
        f"<div class='table-wrap'><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def render_html(advice: Advice) -> str:
    """The report as one self-contained HTML document."""
    secs = sections(advice)
    toc = "".join(f"<li><a href='#{s.anchor}'>{_e(s.title)}</a></li>" for s in secs)
    parts = [
        "<!DOCTYPE html>",
        "<html lang='en'>",
        "<head>",
        "<meta charset='utf-8'>",
        f"<meta http-equiv='Content-Security-Policy' content=\"{_CSP}\">",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{_e(_title(advice))}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<header>",
        f"<h1>{_e(_title(advice))}</h1>",
        f"<p class='meta'>{_e(_meta(advice))}</p>",
        f"<nav><ol>{toc}</ol></nav>",
        "</header>",
        "<main>",
    ]
    for s in secs:
        parts.append(f"<section id='{s.anchor}'><h2>{_e(s.title)}</h2>")
        parts.extend(_html_block(b) for b in s.blocks)
        parts.append("</section>")
    parts += [
        "</main>",
        "<footer>Generated by EdgeDL Advisor. Latency kinds: measured_host "
        "(run on this host in ONNX Runtime), measured_target (run on the target by an "
        "agent), predicted_target (predicted for the target). Units are in every column "
        "header.</footer>",
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


# --- Markdown -----------------------------------------------------------------------------

_MD_INLINE = re.compile(r"([\\`*\[\]|~])")
# `_` between two letters or digits never starts emphasis (CommonMark), so snake_case and the
# latency kinds (predicted_target) stay readable; any other `_` is escaped
_MD_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
# what would start a heading, a list or a rule at the start of a line ("-0.5" is left alone)
_MD_LEADING = re.compile(r"^(#+(?=\s|$)|[+-](?=\s|$)|[-=]+$|\d+(?=[.)](\s|$)))")


def md_escape(text: object) -> str:
    """One line of Markdown text that renders as `text` and carries no markup: newlines
    become spaces, Markdown punctuation is backslash-escaped, and <, >, & become entities."""
    line = " ".join(str(text).split())
    line = _MD_INLINE.sub(r"\\\1", line)
    line = _MD_UNDERSCORE.sub(r"\\_", line)
    line = _MD_LEADING.sub(
        lambda m: m.group(0) + "\\" if m.group(0)[0].isdigit() else "\\" + m.group(0), line
    )
    return html.escape(line, quote=False)


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}\n{text}\n{ticks}"


def _md_block(block: Block, charts: list[str] | None = None, folder: str = "") -> str:
    if isinstance(block, Para):
        return f"**{md_escape(block.text)}**" if block.strong else md_escape(block.text)
    if isinstance(block, Heading):
        return f"### {md_escape(block.text)}"
    if isinstance(block, Bullets):
        return "\n".join(f"- {md_escape(i)}" for i in block.items)
    if isinstance(block, Code):
        return _fence(block.text)
    if isinstance(block, Chart):
        if charts is not None:  # written beside the report: a link any Markdown viewer draws
            charts.append(block.svg)
            return f"![chart {len(charts)}](<{folder}/chart-{len(charts)}.svg>)"
        # An HTML block: Markdown viewers that allow inline HTML draw it; it has no blank line
        return block.svg
    lines = [
        "| " + " | ".join(md_escape(h) for h in block.header) + " |",
        "|" + "|".join("---" for _ in block.header) + "|",
    ]
    lines += ["| " + " | ".join(md_escape(c) or " " for c in row) + " |" for row in block.rows]
    return "\n".join(lines)


def render_markdown(advice: Advice) -> str:
    """The report in Markdown, with the same sections as the HTML; charts as inline SVG (one
    self-contained file)."""
    return _markdown(advice, None, "")


def render_markdown_with_charts(advice: Advice, folder: str) -> tuple[str, list[str]]:
    """The Markdown report linking its charts as `folder/chart-N.svg`, and those charts' SVG
    in order: many Markdown viewers (GitHub's among them) do not draw inline SVG."""
    charts: list[str] = []
    return _markdown(advice, charts, folder), charts


def _markdown(advice: Advice, charts: list[str] | None, folder: str) -> str:
    secs = sections(advice)
    out = [
        f"# {md_escape(_title(advice))}",
        md_escape(_meta(advice)),
        "\n".join(f"{i}. [{md_escape(s.title)}](#{s.anchor})" for i, s in enumerate(secs, 1)),
    ]
    for s in secs:
        out.append(f'<a id="{s.anchor}"></a>\n\n## {md_escape(s.title)}')
        out.extend(_md_block(b, charts, folder) for b in s.blocks)
    return "\n\n".join(out) + "\n"


# --- JSON, files ------------------------------------------------------------------------------


def render_json(advice: Advice) -> str:
    """The Advice as JSON (the stable contract; `load_advice` reads it back)."""
    return advice.model_dump_json(indent=2) + "\n"


def render(advice: Advice, fmt: str) -> str:
    """The report in `fmt` ('html', 'md' or 'json')."""
    renderers = {"html": render_html, "md": render_markdown, "json": render_json}
    if fmt not in renderers:
        raise ReportError(f"unknown report format {fmt!r}; use one of: {', '.join(FORMATS)}")
    return renderers[fmt](advice)


def format_for_path(path: str | Path) -> ReportFormat:
    """The report format a file name asks for, from its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise ReportError(
            f"cannot tell the report format from {str(path)!r}; name it .html, .md or .json "
            "(`edgedl report RUN --format` and write_report(fmt=...) also take the format "
            "explicitly)"
        )
    return _SUFFIXES[suffix]


def write_report(advice: Advice, path: str | Path, fmt: str | None = None) -> Path:
    """Write the report to `path` (parent folders created); the format defaults to the suffix."""
    out = Path(path)
    fmt = fmt or format_for_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "md":  # the charts go beside it as .svg files, linked from the text
        folder = f"{out.stem}.charts"
        text, charts = render_markdown_with_charts(advice, folder)
        if charts:
            (out.parent / folder).mkdir(exist_ok=True)
            for i, svg in enumerate(charts, 1):
                (out.parent / folder / f"chart-{i}.svg").write_text(svg, encoding="utf-8")
    else:
        text = render(advice, fmt)
    out.write_text(text, encoding="utf-8")
    return out


def load_advice(path: str | Path) -> Advice:
    """Read an advice JSON file (as written by `render_json` or `edgedl advise --json`)."""
    from advisor.advice import Advice

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(
            f"no such file: {p}; give a run id (see `edgedl runs list`) or the "
            "path of an advice JSON file"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"cannot read {p}: {exc}") from None
    try:
        return Advice.model_validate_json(text)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err.get("loc", ())) or "document"
        msg = " ".join(str(err.get("msg", "")).split())
        raise ReportError(
            f"{p} is not an advice JSON file ({exc.error_count()} problem(s); first at "
            f"{where}: {msg}); write one with `edgedl advise ... --json` or "
            "`edgedl report RUN_ID --format json`"
        ) from None
