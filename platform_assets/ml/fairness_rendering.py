"""The fairness report as a reader sees it: Markdown tables, a bar chart (PNG bytes), an HTML page.

The report is the JSON-able dict of ``fairness_metrics.fairness_report``.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from typing import Any

import numpy as np

from platform_assets.ml.fairness_metrics import GROUP_METRICS, SUMMARY_METRICS


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def summary_table(report: Mapping[str, Any]) -> str:
    """Markdown: one row per attribute with the summary gaps."""
    columns = [*SUMMARY_METRICS, "four_fifths_rule_passed"]
    lines = ["| attribute | " + " | ".join(columns) + " | too small |", "|---" * (len(columns) + 2) + "|"]
    for name, attribute in report["attributes"].items():
        summary = attribute["summary"]
        small = ", ".join(summary["groups_too_small"]) or "-"
        lines.append(f"| {name} | " + " | ".join(_fmt(summary[c]) for c in columns) + f" | {small} |")
    return "\n".join(lines)


def groups_table(report: Mapping[str, Any]) -> str:
    """Markdown: one row per (attribute, group) with count and rates; too-small groups say so."""
    columns = ["count", *GROUP_METRICS]
    lines = ["| attribute | group | " + " | ".join(columns) + " | notes |", "|---" * (len(columns) + 3) + "|"]
    for name, attribute in report["attributes"].items():
        for row in attribute["groups"]:
            notes = "; ".join(row["notes"]) or "-"
            lines.append(f"| {name} | {row['group']} | " + " | ".join(_fmt(row[c]) for c in columns) + f" | {notes} |")
    return "\n".join(lines)


def bar_chart_png(report: Mapping[str, Any]) -> bytes:
    """Selection (decline) rate and TPR per group, one panel per attribute; too-small groups greyed out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attributes = list(report["attributes"].items())
    figure, axes = plt.subplots(1, len(attributes), figsize=(4.2 * len(attributes), 3.8), dpi=90, squeeze=False)
    for axis, (name, attribute) in zip(axes[0], attributes, strict=True):
        rows = attribute["groups"]
        x = np.arange(len(rows))
        selection = [r["selection_rate"] or 0.0 for r in rows]
        tpr = [r["tpr"] or 0.0 for r in rows]
        colours = ["tab:blue" if r["status"] == "ok" else "lightgrey" for r in rows]
        axis.bar(x - 0.2, selection, width=0.4, color=colours, label="selection (decline) rate")
        axis.bar(x + 0.2, tpr, width=0.4, color=["tab:orange" if r["status"] == "ok" else "lightgrey" for r in rows])
        axis.set_xticks(x, [f"{r['group']}\nn={r['count']}" for r in rows], fontsize=7, rotation=30)
        ratio = attribute["summary"]["disparate_impact_ratio"]
        axis.set_title(f"{name} (DI ratio {_fmt(ratio)})", fontsize=9)
        axis.set_ylim(0, 1)
    axes[0][0].legend(["selection (decline) rate", "TPR"], fontsize=7, loc="upper left")
    figure.suptitle("Per-group rates on the test split (grey: too small to measure)", fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def _html_table(markdown: str) -> str:
    lines = [line for line in markdown.splitlines() if not line.startswith("|---")]
    out = ["<table>"]
    for i, line in enumerate(lines):
        cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
        tag = "th" if i == 0 else "td"
        out.append("<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>")
    return "\n".join(out + ["</table>"])


def report_html(report: Mapping[str, Any], png: bytes, title: str) -> str:
    """A self-contained HTML page: summary table, per-group table and the chart inline."""
    image = base64.b64encode(png).decode("ascii")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(report['decision'])}; threshold "
        f"{report['threshold']:.4f}; {report['rows']} test rows; groups under {report['min_group_size']} rows "
        "are too small to measure.</p><h2>Summary gaps</h2>"
        f"{_html_table(summary_table(report))}<h2>Per group</h2>{_html_table(groups_table(report))}"
        f"<img alt='per-group rates' src='data:image/png;base64,{image}'></body></html>"
    )
