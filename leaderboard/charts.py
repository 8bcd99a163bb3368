"""Altair charts shared by the app and the static report (`peftbench report --html`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import altair as alt
import pandas as pd

from leaderboard.format import auto_kinds, axis_format, column_label, d3_format
from leaderboard.pagedata import COST_AXES, Metric

if TYPE_CHECKING:
    from leaderboard.saved import SavedQuery

_HEIGHT = 380
# A row's method in a tooltip: its written name (`leaderboard.catalog.written_names`).
_METHOD = alt.Tooltip("name:N", title="method")


def _baseline_rule(value: float | None, axis: str = "y") -> alt.Chart | None:
    if value is None or pd.isna(value):
        return None
    frame = pd.DataFrame({"baseline": [float(value)], "label": ["baseline"]})
    enc = {axis: alt.X("baseline:Q") if axis == "x" else alt.Y("baseline:Q")}
    rule = alt.Chart(frame).mark_rule(color="#888", strokeDash=[6, 4]).encode(**enc)
    rule = rule.encode(tooltip=[alt.Tooltip("baseline:Q", title="Majority/mean baseline")])
    text = alt.Chart(frame.assign(text=f"baseline {value:.3f}"))
    if axis == "x":
        text = text.mark_text(align="left", dx=4, y=0, dy=-6, color="#666").encode(
            x="baseline:Q", text="text:N"
        )
    else:
        text = text.mark_text(align="left", x=4, dy=-6, color="#666").encode(
            y="baseline:Q", text="text:N"
        )
    return alt.layer(rule, text)


def overview_chart(rows: pd.DataFrame, metric: Metric) -> alt.Chart:
    """Each method's mean with its 95% CI, the task's baseline as a dashed reference line.
    A row's label names its hardware profile only when the rows span several."""
    several = rows["profile"].nunique() > 1
    data = rows.assign(
        label=rows["name"] + (" (" + rows["profile"] + ")" if several else ""),
        seeds=rows["n_seeds"].astype(int),
    )[["label", "name", "profile", "mean", "ci_low", "ci_high", "seeds", "baseline_value"]]
    order = data.sort_values("mean", ascending=not metric.higher_is_better)["label"].tolist()
    y = alt.Y("label:N", sort=order, title=None, axis=alt.Axis(labelLimit=260))
    x_scale = alt.Scale(zero=False)
    bars = (
        alt.Chart(data)
        .mark_point(filled=True, size=70)
        .encode(
            x=alt.X("mean:Q", title=metric.label, scale=x_scale),
            y=y,
            color=alt.Color("profile:N", title="Profile"),
            tooltip=[_METHOD, "profile", "mean", "ci_low", "ci_high", "seeds"],
        )
    )
    whiskers = alt.Chart(data).mark_rule().encode(x="ci_low:Q", x2="ci_high:Q", y=y)
    layers = [whiskers, bars]
    rule = _baseline_rule(data["baseline_value"].dropna().max(), axis="x")
    if rule is not None:
        layers.append(rule)
    return alt.layer(*layers).properties(
        height=alt.Step(24),
        title="Mean and 95% interval, as the table's Interval over says (dashed: baseline)",
    )


def pareto_chart(points: pd.DataFrame, axis: str, metric: Metric) -> alt.Chart:
    """Quality against one cost: error bars from seeds, the Pareto front joined, marked and
    named (the other points are named in their tooltips)."""
    label, _, unit, log = COST_AXES[axis]
    x_title = f"{label} ({unit})" if unit else label
    data = points.assign(
        front=points["on_front"].map({True: "Pareto-optimal", False: "dominated"}),
        name_above=_alternating(points),
    )[
        [
            "name",
            "family",
            "profile",
            "mean",
            "ci_low",
            "ci_high",
            "n_seeds",
            "cost_display",
            "front",
            "on_front",
            "name_above",
            "lr",
            "params",
            "cell_ids_text",
        ]
    ]
    x = alt.X(
        "cost_display:Q",
        title=x_title,
        scale=alt.Scale(type="log" if log else "linear", zero=False),
        axis=alt.Axis(grid=not log),  # a log axis's minor grid drowns the points
    )
    y = alt.Y("mean:Q", title=metric.label, scale=alt.Scale(zero=False))
    tooltip = [
        _METHOD,
        alt.Tooltip("profile:N"),
        alt.Tooltip("mean:Q", format=".4f"),
        alt.Tooltip("ci_low:Q", format=".4f", title="95% CI low"),
        alt.Tooltip("ci_high:Q", format=".4f", title="95% CI high"),
        alt.Tooltip("n_seeds:Q", title="seeds"),
        alt.Tooltip("cost_display:Q", format=",.4g", title=x_title),
        alt.Tooltip("lr:Q", format=".2e", title="learning rate"),
        alt.Tooltip("params:N", title="hyperparameters"),
        alt.Tooltip("cell_ids_text:N", title="cell ids"),
    ]
    base = alt.Chart(data)
    errors = base.mark_rule(opacity=0.6).encode(x=x, y="ci_low:Q", y2="ci_high:Q")
    front = (
        base.transform_filter("datum.on_front")
        .mark_line(color="#d62728", strokeWidth=2)
        .encode(x=x, y=y, detail="profile:N", order="cost_display:Q")
    )
    dots = base.mark_point(filled=True).encode(
        x=x,
        y=y,
        color=alt.Color("family:N", title="Family"),
        shape=alt.Shape("front:N", title="Pareto", scale=alt.Scale(range=["diamond", "circle"])),
        size=alt.condition("datum.on_front", alt.value(160), alt.value(60)),
        tooltip=tooltip,
    )
    # Only the front's points are named: a dominated method's name is in its tooltip, so
    # the dense middle of the cloud (where most methods land) stays readable.
    names = [
        base.transform_filter(f"datum.on_front && {'' if above else '!'}datum.name_above")
        .mark_text(align="left", dx=7, dy=-7 if above else 12, fontSize=11)
        .encode(x=x, y=y, text="name:N")
        for above in (True, False)
    ]
    layers = [errors, front, dots, *names]
    rule = _baseline_rule(points["baseline_value"].dropna().max())
    if rule is not None:
        layers.append(rule)
    return alt.layer(*layers).properties(
        height=_HEIGHT, title=f"{metric.display} against {label.lower()}"
    )


def _alternating(points: pd.DataFrame) -> pd.Series:
    """Whether a point's name goes above it: along each front in order of cost, every other
    name goes below, so neighbours of nearly one cost (vera and lora-xs in the league, 8.5k
    and 8.3k parameters) are not printed over each other."""
    front = points[points["on_front"].astype(bool)].sort_values("cost_display", kind="stable")
    step = front.groupby("profile", sort=False).cumcount()
    return (step % 2 == 0).reindex(points.index, fill_value=True)


def merging_chart(rows: pd.DataFrame) -> alt.Chart:
    """Normalised score of each merge on each source task (1 = the task's own adapter)."""
    data = rows[rows["status"] == "ok"][["method", "task", "seed", "normalised"]].dropna()
    points = (
        alt.Chart(data)
        .mark_point(filled=True, size=70)
        .encode(
            x=alt.X("mean(normalised):Q", title="Normalised (merged / own adapter)",
                    scale=alt.Scale(zero=False)),
            y=alt.Y("method:N", title=None, sort="-x"),
            color=alt.Color("task:N", title="Source task"),
            tooltip=["method", "task", alt.Tooltip("mean(normalised):Q", format=".4f"),
                     alt.Tooltip("count(seed):Q", title="seeds")],
        )
    )  # fmt: skip
    one = alt.Chart(pd.DataFrame({"x": [1.0]})).mark_rule(color="#888", strokeDash=[6, 4])
    return alt.layer(points, one.encode(x="x:Q")).properties(
        height=alt.Step(28), title="Mean over seeds (dashed: each task's own adapter)"
    )


def compression_chart(rows: pd.DataFrame, metric_label: str) -> alt.Chart:
    """Quality against sparsity per method, the dense model as the reference line."""
    data = rows[["series", "method", "sparsity", "level_label", "value", "latency_s"]]
    lines = (
        alt.Chart(data)
        .mark_line(point=alt.OverlayMarkDef(filled=True, size=60))
        .encode(
            x=alt.X("sparsity:Q", title="Sparsity of the targeted weights",
                    axis=alt.Axis(format="%")),
            y=alt.Y("value:Q", title=metric_label, scale=alt.Scale(zero=False)),
            color=alt.Color("series:N", title="Method"),
            tooltip=["method", "level_label", alt.Tooltip("sparsity:Q", format=".1%"),
                     alt.Tooltip("value:Q", format=".4f"), "latency_s"],
        )
    )  # fmt: skip
    dense = (
        float(rows["dense_value"].dropna().iloc[0]) if rows["dense_value"].notna().any() else None
    )
    layers = [lines]
    if dense is not None:
        frame = pd.DataFrame({"dense": [dense], "text": [f"dense {dense:.3f}"]})
        rule = alt.Chart(frame).mark_rule(color="#444", strokeDash=[6, 4]).encode(y="dense:Q")
        text = alt.Chart(frame).mark_text(align="left", x=4, dy=-6, color="#444")
        layers += [rule, text.encode(y="dense:Q", text="text:N")]
    return alt.layer(*layers).properties(
        height=_HEIGHT, title="Quality against sparsity (dashed: the dense model)"
    )


def ablation_chart(frame: pd.DataFrame, query: SavedQuery) -> alt.Chart:
    """A saved query's rows as lines, axes, legend and tooltips under people's labels
    (`format.COLUMN_LABELS`), axis ticks and tooltips in the tables' formats (whole
    numbers as integers, scores rounded)."""
    kinds = auto_kinds(frame)
    x_type = "N" if frame[query.x].dtype == object else "Q"
    scale = alt.Scale(type="log") if query.x_log else alt.Scale(zero=False)
    x_title = column_label(query.x)
    x = (
        alt.X(f"{query.x}:Q", scale=scale, title=x_title,
              axis=alt.Axis(**axis_format(frame[query.x], kinds.get(query.x))))
        if x_type == "Q"
        else alt.X(f"{query.x}:N", title=x_title)
    )  # fmt: skip
    y_axis = alt.Axis(**axis_format(frame[query.y], kinds.get(query.y)))
    tooltip = [
        alt.Tooltip(
            f"{c}:{'Q' if pd.api.types.is_numeric_dtype(frame[c]) else 'N'}",
            title=column_label(str(c)),
            **(
                {"format": d3_format(frame[c], kinds.get(c), axis=False)}
                if pd.api.types.is_numeric_dtype(frame[c])
                else {}
            ),
        )
        for c in frame.columns[:8]
    ]
    points = (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y(
                f"{query.y}:Q",
                scale=alt.Scale(zero=False),
                title=column_label(query.y),
                axis=y_axis,
            ),
            color=alt.Color(f"{query.color}:N", title=column_label(query.color)),
            tooltip=tooltip,
        )
    )
    if query.facet:
        facet = alt.Facet(f"{query.facet}:N", title=column_label(query.facet))
        points = points.properties(width=220, height=160).facet(facet=facet, columns=3)
    return points
