"""Design-review reports (HTML, Markdown, JSON) for an Advice: content, blocks, charts and
renderers.

>>> from advisor.report import FORMATS
>>> sorted(FORMATS)
['html', 'json', 'md']
"""

from advisor.report.renderers import (
    FORMATS,
    ReportFormat,
    format_for_path,
    load_advice,
    md_escape,
    render,
    render_html,
    render_json,
    render_markdown,
    render_markdown_with_charts,
    write_report,
)

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
