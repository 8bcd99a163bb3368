"""`peftbench report --html FILE`: the leaderboard's Overview and Pareto charts as one file.

The file embeds every chart's Vega-Lite spec with its data, so it needs no server and no
database to share; the charts are drawn by Vega, Vega-Lite and vega-embed, embedded once
in the file (vl-convert's bundle, the one altair's own `inline` HTML uses), so it draws
with no network access. Every number is also written as a plain HTML table.
The charts and tables are the app's own (`leaderboard.charts`, `leaderboard.tables`).
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from pathlib import Path

from leaderboard import charts, data, pagedata, tables

# What the header says about intervals; the table's "Interval over" column names each row's.
INTERVAL_WORDS = (
    "Scores: mean and 95% interval: a bootstrap over the test examples (and over seeds "
    "where a config has 3 or more), kept inside the metric's range; rows stored without "
    "per-example predictions fall back to the t-interval over seeds. The table's "
    '"Interval over" column says which each row uses.'
)
_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse;font-size:13px;margin:1em 0}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}
th{background:#f4f4f4}h2{margin-top:2em;border-bottom:1px solid #ccc}"""


class _Page:
    """Accumulates HTML sections and the chart specs to embed."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.specs: dict[str, dict] = {}

    def chart(self, chart) -> None:
        key = f"chart{len(self.specs)}"
        self.specs[key] = chart.properties(width=900).to_dict()
        self.parts.append(f'<div id="{key}"></div>')

    def table(self, table) -> None:
        self.parts.append(table.styled().to_html(index=False, escape=True))

    def text(self, tag: str, value: str) -> None:
        self.parts.append(f"<{tag}>{html.escape(value)}</{tag}>")

    def render(self, title: str) -> str:
        embeds = "".join(
            f"vegaEmbed('#{k}', {json.dumps(v, default=str)}, {{actions: false}});"
            for k, v in self.specs.items()
        )
        return (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{_STYLE}</style><script>{_scripts()}</script></head>"
            f"<body>{''.join(self.parts)}"
            f"<script>{embeds}</script></body></html>"
        )


def _scripts() -> str:
    """Vega, Vega-Lite and vega-embed as one script (about 0.9 MB), for the Vega-Lite
    version altair writes. It holds no `</script` (that would close the tag early);
    the check keeps a future bundle from breaking the page silently."""
    import vl_convert
    from altair.utils._importers import vl_version_for_vl_convert

    bundle = vl_convert.javascript_bundle(vl_version=vl_version_for_vl_convert())
    if "</script" in bundle.lower():
        raise RuntimeError("the vega bundle holds '</script'; it cannot be inlined as is")
    return bundle


def build_report(db: Path) -> str:
    """The HTML of the report: one section per protocol (the default first), and in it
    every (task, model) with successful results."""
    reader = data.Reader(db)
    fresh = data.freshness(reader)
    page = _Page()
    page.text("h1", "peftbench leaderboard")
    page.text(
        "p",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC} from {db}. {fresh.describe()} "
        f"{INTERVAL_WORDS} Dashed line: majority/mean baseline; red line: the Pareto front.",
    )
    protocols = pagedata.protocols(reader)
    first = pagedata.default_protocol(protocols)  # the league, if stored, opens the report
    protocols = protocols.sort_values("protocol", key=lambda c: c != first, kind="stable")
    triples = pagedata.choices(reader)[["protocol", "task", "model"]].drop_duplicates()
    for protocol, label, words in protocols[["protocol", "label", "budget_words"]].itertuples(
        index=False
    ):
        page.text("h2", f"Protocol {label}")
        page.text("p", f"{words}. Rows of other protocols are never ranked or charted with these.")
        pairs = triples[triples["protocol"] == protocol]
        for task, model in pairs[["task", "model"]].itertuples(index=False):
            _task_section(page, reader, pagedata.Filters(task, model, protocol=protocol))
    return page.render("peftbench leaderboard")


def _task_section(page: _Page, reader: data.Reader, filters: pagedata.Filters) -> None:
    """One protocol's task and model: the overview chart and table, then its fronts."""
    task, model = filters.task, filters.model
    metric = pagedata.primary_metric(reader, task)
    rows = pagedata.leaderboard_rows(reader, filters)
    page.text("h3", f"{task} on {model}")
    page.chart(charts.overview_chart(rows, metric))
    page.table(tables.overview_table(rows, metric))
    for axis, (label, *_rest) in pagedata.COST_AXES.items():
        points = pagedata.pareto_data(reader, filters, axis).dropna(subset=["cost"])
        if not points.empty:
            page.text("h4", f"Pareto: {metric.display} against {label.lower()}")
            page.chart(charts.pareto_chart(points, axis, metric))


def write_report(db: Path, out: Path) -> Path:
    """Write the report to `out` (folders created); returns the path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(build_report(db), encoding="utf-8")
    return out
