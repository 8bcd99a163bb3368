"""The leaderboard reads like a product: numbers in human units, "–" for what is
missing (never "None" or "nan"), raw numbers kept underneath for sorting."""

from __future__ import annotations

import json
import math
import re

import pandas as pd
import pytest

from leaderboard import format as fmt
from leaderboard import pagedata, tables
from leaderboard.data import Reader
from tests.support.demo import demo_db_copy


def test_each_kind_of_number_reads_in_its_units():
    assert fmt.count(77578) == "77,578" and fmt.count(22_700_000) == "22.7 M"
    assert fmt.nbytes(1819279360) == "1.69 GiB" and fmt.nbytes(3 * 2**20) == "3 MiB"
    assert fmt.duration(0.044) == "44 ms" and fmt.duration(105.4) == "1 min 45 s"
    assert fmt.duration(60.3) == "1 min 0 s" and fmt.duration(3.2) == "3.2 s"
    assert fmt.duration(119.6) == "2 min 0 s"  # was "1 min 60 s"
    assert fmt.score(0.76284) == "0.7628"
    # One way everywhere, the league's docs included: "1", never "1.000".
    assert [fmt.p_value(p) for p in (1.0, 0.021, 0.0077, 0.00005)] == [
        "1",
        "0.021",
        "0.0077",
        "<1e-4",
    ]
    assert fmt.flops(5.09e13) == "50.9 TFLOP/s"
    assert fmt.percent(12.345) == "12.3 %" and fmt.share(0.5) == "50 %"
    assert fmt.bandwidth(2.5e10) == "25 GB/s" and fmt.score.__name__ != "formatted"
    for missing in (None, math.nan, pd.NA):
        assert all(f(missing) == "–" for f in fmt.FORMATS.values())


def test_every_page_table_renders_without_none_or_nan(tmp_path):
    reader = Reader(demo_db_copy(tmp_path / "demo.duckdb"))
    filters = pagedata.Filters("drug-condition", "minilm-l6")
    rows = pagedata.leaderboard_rows(reader, filters)
    metric = pagedata.primary_metric(reader, "drug-condition")
    built = [
        tables.overview_table(rows, metric),
        tables.aggregate_table(pagedata.all_tasks_rows(reader, filters)),
        tables.method_results_table(pagedata.method_data(reader, "lora")["rows"]),
    ]
    for axis, kind in pagedata.COST_KINDS.items():
        points = pagedata.pareto_data(reader, filters, axis)
        built.append(tables.pareto_table(points, pagedata.COST_AXES[axis][0], kind))
    from leaderboard.hardware import hardware_data

    hw = hardware_data(reader)
    built += [
        tables.profiles_table(hw["profiles"]),
        tables.machines_table(hw["recorded"]),
        tables.results_on_table(hw["rows"]),
    ]
    for table in built:
        shown = table.styled()
        cells = {str(v) for v in shown.to_numpy().ravel()}
        assert not cells & {"None", "nan", "NaN", "<NA>"}, cells
        assert all(shown[c].map(type).eq(str).all() for c in shown.columns)
    assert not hw["rows"].empty and not built[-1].frame["Protocol"].str.contains("@").any()
    overview = " ".join(built[0].styled().to_numpy().ravel())
    assert "MiB" in overview and " ms" in overview and "–" in overview
    assert any(" GiB" in " ".join(t.styled().to_numpy().ravel()) for t in built)


def test_class_ids_become_names_however_they_are_stored():
    """Predictions keep class ids, as text or numbers ("3", "3.0", 3, 3.0); the Method page
    shows the task's label names for all of them, and keeps what is not an id."""
    from leaderboard.catalog import _name

    names = ("ADHD", "Acne", "Anxiety", "Bipolar")
    for stored in ("3", "3.0", 3, 3.0):
        assert _name(stored, names) == "Bipolar"
    for kept in ("7", "2.5", "yes", -1):
        assert _name(kept, names) == kept


def test_ablation_axes_read_like_the_tables_even_with_one_point():
    """Issue 23: one rank-8 point at 7/9 drew ticks "0.777778" and "8.000000"."""
    import vl_convert

    from leaderboard.charts import ablation_chart
    from leaderboard.saved import SAVED

    frame = pd.DataFrame(
        {"method_kind": ["lora"], "method": ["lora"], "profile": ["cpu-local"],
         "sweep_param": ["r"], "sweep_value": [8.0], "mean": [7 / 9], "ci_low": [0.7196],
         "ci_high": [0.836], "n_seeds": [1], "trainable_params": [77578]}
    )  # fmt: skip
    svg = vl_convert.vegalite_to_svg(ablation_chart(frame, SAVED["rank"]).to_dict())
    ticks = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    assert "0.778" in ticks and "8" in ticks, ticks
    assert not any(t in ("0.777778", "8.000000", "8.0") for t in ticks), ticks
    spec = json.dumps(ablation_chart(frame, SAVED["rank"]).to_dict())
    assert '"format": ".4f"' in spec and '"format": ",d"' in spec  # tooltips: mean, counts
    assert fmt.d3_format(pd.Series([0.001, 0.0003])) == ".4~g"


def test_the_method_page_shows_the_overviews_holm_p(tmp_path):
    """Issue 23: the Method page's "p" (the seed t-test's, blank at one seed) beside the
    Overview's "p (Holm)" for the same rows; now both show the view's Holm p."""
    reader = Reader(demo_db_copy(tmp_path / "demo.duckdb"))
    metric = pagedata.primary_metric(reader, "drug-condition")
    rows = pagedata.leaderboard_rows(reader, pagedata.Filters("drug-condition", "minilm-l6"))
    overview = tables.overview_table(rows, metric).styled()
    method = tables.method_results_table(pagedata.method_data(reader, "head")["rows"]).styled()
    mine = method[method["Task"] == "drug-condition"].set_index("Profile")
    theirs = overview[overview["Method"] == "head"].set_index("Profile")
    assert "p" not in method.columns and len(mine) == len(theirs) > 0
    for column in ("p (Holm)", "Holm over", "vs baseline method"):
        assert mine[column].to_dict() == theirs[column].to_dict(), column
    assert (mine["p (Holm)"] != "–").all()


@pytest.fixture(scope="module")
def demo_reader(tmp_path_factory) -> Reader:
    return Reader(demo_db_copy(tmp_path_factory.mktemp("charts") / "demo.duckdb"))


def test_overview_labels_name_the_profile_only_when_the_rows_span_several(demo_reader):
    """The published league's Overview read "lora (cpu-local)", "dora (cpu-local)", ..."""
    from leaderboard.charts import overview_chart

    reader = demo_reader
    metric = pagedata.primary_metric(reader, "drug-condition")

    def labels(profile: str) -> set[str]:
        rows = pagedata.leaderboard_rows(
            reader, pagedata.Filters("drug-condition", "minilm-l6", profile)
        )
        spec = overview_chart(rows, metric).to_dict()
        return {r["label"] for d in spec["datasets"].values() for r in d if "label" in r}

    one = labels("cpu-local")
    assert "LoRA" in one and not any("(" in label for label in one)
    both = labels(pagedata.ALL_PROFILES)
    assert {"LoRA (cpu-local)", "LoRA (gpu-a100)"} <= both


def test_pages_write_methods_as_papers_do_and_key_on_labels(demo_reader):
    """The Overview read "lora", "full", "bitfit": the names papers use are "LoRA", "full
    fine-tuning", "BitFit"; a labelled variant of the fixture's own matrix keeps its label,
    and the rows (CSV, joins, selectors) keep the labels."""
    reader = demo_reader
    filters = pagedata.Filters("drug-condition", "minilm-l6", "cpu-local")
    rows = pagedata.leaderboard_rows(reader, filters)
    names = dict(zip(rows["method"], rows["name"], strict=True))
    assert names["lora"] == "LoRA" and names["full"] == "full fine-tuning"
    assert names["bitfit"] == "BitFit" and names["lora-r16"] == "lora-r16"
    shown = tables.overview_table(rows, pagedata.primary_metric(reader, filters.task)).frame
    assert {"LoRA", "full fine-tuning", "lora-r16"} <= set(shown["Method"])
    assert "lora" not in set(shown["Method"])
    agg = tables.aggregate_table(pagedata.all_tasks_rows(reader, filters)).frame
    assert "LoRA" in set(agg["Method"])
    points = pagedata.pareto_data(reader, filters, "trainable_params")
    assert set(tables.pareto_table(points, "cost", "count").frame["Method"]) == set(names.values())
    assert pagedata.methods(reader)["lora"] == "LoRA"  # the Method page's selector: label -> name


def test_pareto_names_only_the_front(demo_reader):
    """ia3, nola and dora's names overlapped in the published league's dense middle: only
    the front's points are named; every point keeps its tooltip."""
    from leaderboard.charts import pareto_chart

    reader = demo_reader
    filters = pagedata.Filters("drug-condition", "minilm-l6", "cpu-local")
    points = pagedata.pareto_data(reader, filters, "trainable_params")
    metric = pagedata.primary_metric(reader, "drug-condition")
    spec = pareto_chart(points, "trainable_params", metric).to_dict()
    layers = [layer for layer in spec["layer"] if "mark" in layer]  # a nested layer: baseline
    names = [
        layer
        for layer in layers
        if layer["mark"]["type"] == "text" and layer["encoding"]["text"]["field"] == "name"
    ]
    filters = {t["filter"] for layer in names for t in layer["transform"]}
    assert filters == {"datum.on_front && datum.name_above", "datum.on_front && !datum.name_above"}
    # Along the front by cost, names alternate above and below their points.
    drawn = pd.DataFrame(spec["datasets"][names[0]["data"]["name"]])
    front = drawn[drawn["on_front"]].sort_values("cost_display")
    assert list(front["name_above"]) == [i % 2 == 0 for i in range(len(front))]
    dots = next(layer for layer in layers if layer["mark"]["type"] == "point")
    assert "transform" not in dots
    assert any(t["field"] == "name" for t in dots["encoding"]["tooltip"])  # the written name
    assert {"LoRA", "full fine-tuning"} <= set(drawn["name"])
    assert points["on_front"].any() and not points["on_front"].all()


def test_saved_queries_chart_names_beside_the_labels_they_select(demo_reader):
    """The Ablations page's tables and charts read "LoRA" beside the label its SQL returns."""
    from leaderboard.charts import ablation_chart
    from leaderboard.saved import SAVED, run_saved

    frame = run_saved(demo_reader, "seeds", "drug-condition", "minilm-l6")
    assert list(frame.columns[:2]) == ["method", "name"]
    assert frame.set_index("method").loc["lora", "name"].tolist() == ["LoRA", "LoRA"]  # 2 profiles
    spec = ablation_chart(frame, SAVED["seeds"]).to_dict()
    assert spec["encoding"]["x"]["field"] == "name"
