"""AppTest (streamlit.testing) of every leaderboard page against a fixture database built
by the store's own code: failed cells, single- and multi-seed methods, two profiles."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from leaderboard.pagedata import ALL_PROFILES, ALL_TASKS  # noqa: E402
from tests.support.demo import demo_db_copy  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "leaderboard" / "app.py")


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    return demo_db_copy(tmp_path_factory.mktemp("lb") / "demo.duckdb")


@pytest.fixture
def app(db, monkeypatch) -> AppTest:
    monkeypatch.setenv("PEFTBENCH_DB", str(db))
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, at.exception
    return at


def _page(at: AppTest, name: str) -> AppTest:
    at.switch_page(f"app_pages/{name}.py").run()
    assert not at.exception, at.exception
    return at


def _titles(at: AppTest) -> list[str]:
    return [t.value for t in at.main.title]


def test_overview_one_task(app):
    assert _titles(app) == ["Overview: drug-condition on minilm-l6"]
    table = app.dataframe[0].value
    # 8 method entries on cpu-local, 3 on the second profile.
    assert len(table) == 11
    assert set(table["Profile"]) == {"cpu-local", "gpu-a100"}
    assert "Accuracy" in table.columns  # display name from the task YAML
    # Methods as their papers write them (method.yaml's `display`); a variant keeps its label.
    full = table[(table["Method"] == "full fine-tuning") & (table["Profile"] == "cpu-local")]
    full = full.iloc[0]
    # One seed: the interval is over its test examples only, and says so.
    assert full["Seeds"] == "1" and full["Interval over"] == "examples"
    assert float(full["CI low (95%)"]) < float(full["Accuracy"]) < float(full["CI high (95%)"])
    lora16 = table[(table["Method"] == "lora-r16") & (table["Profile"] == "cpu-local")].iloc[0]
    assert lora16["Seeds"] == "2" and lora16["Failed"] == "1"
    low, mean, high = (float(lora16[c]) for c in ("CI low (95%)", "Accuracy", "CI high (95%)"))
    assert low < mean < high
    assert full["Peak memory"].endswith("GiB") and full["Train time"].endswith("s")
    notes = " ".join(m.value for m in app.main.markdown)
    assert "0.4020" in notes and "against **LoRA**" in notes  # the baseline and its method
    assert len(app.get("vega_lite_chart")) == 1
    assert app.get("download_button")


def test_overview_filters_and_all_tasks(app):
    app.sidebar.selectbox(key="profile").select("gpu-a100").run()
    assert not app.exception
    assert set(app.dataframe[0].value["Profile"]) == {"gpu-a100"}
    app.sidebar.selectbox(key="profile").select(ALL_PROFILES)
    app.sidebar.selectbox(key="task").select(ALL_TASKS).run()
    assert not app.exception
    assert _titles(app) == ["Overview: all tasks"]
    agg = app.dataframe[0].value
    assert {"Mean score", "Mean rank", "Tasks"} <= set(agg.columns)
    ranks = agg["Mean rank"].astype(float)
    assert ranks.iloc[0] <= ranks.max()


def test_pareto_every_axis(app):
    at = _page(app, "pareto")
    assert _titles(at)[0].startswith("Pareto: drug-condition on minilm-l6 (cpu-local)")
    assert len(at.radio(key="cost_axis").options) == 7
    for axis in (
        "trainable_params",
        "peak_memory_bytes",
        "train_wall_s",
        "latency_unmerged_s",
        "adapter_bytes",
        "base_bytes",
        "training_memory_bytes",
    ):
        at.radio(key="cost_axis").set_value(axis).run()
        assert not at.exception, at.exception
        assert len(at.get("vega_lite_chart")) == 1
        table = at.dataframe[0].value
        front = set(table[table["Pareto-optimal"] == "yes"]["Method"])
        assert "full fine-tuning" in front  # the best score is always on the front
        if axis != "train_wall_s":  # same params/memory/latency/size as lora, worse score
            assert "lora-lr1e-4" not in front


def test_method_page(app):
    at = _page(app, "method")
    at.selectbox(key="method").select("lora").run()
    assert not at.exception
    assert _titles(at) == ["Method: LoRA"]  # the selector's value stays the label
    assert "r: 8" in at.code[0].value
    text = " ".join(m.value for m in at.markdown)
    assert "2106.09685" in text  # citation from the plugin
    assert "PEFT" in text  # the source it follows
    checks = at.dataframe[0].value
    assert "claimed" in set(checks["Claimed"])
    results = at.dataframe[1].value
    assert {"drug-condition", "drug-sentiment"} <= set(results["Task"])
    assert len(at.get("vega_lite_chart")) == 1  # loss curves (the demo has no trials)
    at.selectbox(key="method").select("head").run()
    assert not at.exception
    lost = at.dataframe[-1].value  # test examples head gets wrong that lora gets right
    assert len(lost) > 0 and set(lost["Baseline method"]) == {"LoRA"}
    assert (lost["Prediction"] != lost["Gold"]).mean() > 0.5  # most seeds' usual answer
    # classes by the task's label names, not the stored class ids ("Gold 3")
    from leaderboard.catalog import class_names

    for task, part in lost.groupby("Task"):
        names = set(class_names(task))
        assert set(part["Gold"]) <= names and set(part["Prediction"]) <= names
        assert set(part["Its prediction"]) <= names


def test_ablations_saved_queries_and_sql_box(app):
    at = _page(app, "ablations")
    for name in ("rank", "lr", "seeds"):
        at.radio(key="saved").set_value(name).run()
        assert not at.exception, at.exception
        table = at.dataframe[0].value
        assert not table.empty
        # people's labels, not the store's column names; numbers rounded
        assert not {"sweep_value", "method_kind", "ci_width", "n_seeds"} & set(table.columns)
        cells = " ".join(table.astype(str).to_numpy().ravel())
        assert not re.search(r"\d\.\d{6,}", cells), cells


def test_seed_variance_with_one_seed_says_so(app, monkeypatch):
    """Every row single-seed: the seed-variance query says so in words, no empty chart."""
    import pandas as pd

    from leaderboard import saved

    one_seed = pd.DataFrame(
        {"method": ["lora"], "profile": ["cpu-local"], "n_seeds": [1], "n_failed": [0],
         "mean": [0.5], "std": [None], "ci_width": [None]}
    )  # fmt: skip
    real = saved.run_saved

    def fake(reader, name, *args, **kwargs):  # the page opens on another saved query first
        return one_seed.copy() if name == "seeds" else real(reader, name, *args, **kwargs)

    monkeypatch.setattr(saved, "run_saved", fake)
    at = _page(app, "ablations")
    at.radio(key="saved").set_value("seeds").run()
    assert not at.exception, at.exception
    assert any("single seed" in i.value for i in at.info)
    assert not at.get("vega_lite_chart")
    at.text_area(key="sql").input("SELECT method, mean FROM leaderboard ORDER BY mean").run()
    at.button(key="run_sql").click().run()
    assert not at.error
    assert "mean" in at.dataframe[-1].value.columns
    at.text_area(key="sql").input("DROP TABLE cell_runs").run()
    at.button(key="run_sql").click().run()
    assert at.error and "Refused" in at.error[0].value


def test_hardware_page(app):
    at = _page(app, "hardware")
    profiles = at.dataframe[0].value
    assert set(profiles["Profile"]) == {"cpu-local", "gpu-a100"}
    assert profiles.set_index("Profile").loc["gpu-a100", "Ok"] == "6"
    assert "{" not in " ".join(profiles["Hardware"])  # readable fields, not raw JSON
    machines = at.dataframe[1].value
    assert "Recorded profile" not in machines.columns  # ids (hex in real runs) are not shown
    a100 = machines[machines["Declared profiles"] == "gpu-a100"].iloc[0]
    assert "A100" in a100["Machine"] and "GiB RAM" in a100["Machine"]
    assert a100["Ok"] == "6" and a100["Machines"] == "1"
    assert a100["Device memory"] == "40 GiB"
    at.selectbox(key="hw_profile").select("gpu-a100").run()
    rows = at.dataframe[-2].value
    assert set(rows["Method"]) == {"full fine-tuning", "LoRA", "head"}
    # Where the time goes: one row per method on the profile, every phase a column.
    phases = at.dataframe[-1].value
    assert set(phases["Method"]) == {"full fine-tuning", "LoRA", "head"}
    phases = phases[phases["Task"] == "drug-condition"].set_index("Method")
    assert {"Dispatch", "Train", "Evaluate", "Result to row", "Scheduling share"} <= set(
        phases.columns
    )
    assert phases.loc["LoRA", "Cells"] == "1"
    assert phases.loc["LoRA", "Model cached"] in ("0 %", "100 %")


def test_merging_page(app):
    at = _page(app, "merging")
    assert _titles(at) == ["Merging"]
    table = at.dataframe[0].value
    # Each merge as its paper writes it (posthoc.yaml's `display`).
    assert set(table["Merge"]) == {
        "linear average", "task arithmetic", "TIES-merging", "LoRA-LEGO", "RMM"
    }  # fmt: skip
    rmm = table.set_index("Merge").loc["RMM"]
    # seeds 0 and 1 ok; seed 2 refused (input missing): counted, not averaged in
    assert rmm["Seeds ok"] == "2" and rmm["Not ok"] == "1"
    assert rmm["Fidelity"] == "reconstructed"
    for task in ("drug-condition", "drug-sentiment"):
        value = float(rmm[f"Normalised on {task}"])
        merged, own = float(rmm[f"Merged on {task}"]), float(rmm[f"Own adapter on {task}"])
        assert 0.9 < value < 1.05 and merged < own * 1.05
    assert rmm["Stored (merged update)"].endswith("KiB") and rmm["Merge time"].endswith("s")
    # best mean normalised first
    means = [float(v) for v in table["Mean normalised"]]
    assert means == sorted(means, reverse=True)
    assert len(at.get("vega_lite_chart")) == 1
    problems = at.dataframe[1].value
    assert (
        list(problems["Status"]) == ["input_missing"] and "never retrain" in problems["Reason"][0]
    )


def test_compression_page(app):
    at = _page(app, "compression")
    assert _titles(at) == ["Compression"]
    assert (
        at.selectbox(key="compression_source").value
        == "full on drug-condition x minilm-l6 (seed 0)"
    )
    table = at.dataframe[0].value
    assert len(table) == 11
    assert set(table["Level"]) == {"30%", "50%", "70%", "2:4"}
    two_four = table[table["Level"] == "2:4"]
    assert set(two_four["Method"]) == {"magnitude pruning", "Wanda"}
    assert set(two_four["Pattern holds"]) == {"yes"}
    dense = set(table["Dense score"])
    assert len(dense) == 1  # one source model: one dense reference
    assert all(float(s) < float(next(iter(dense))) for s in table["Score"])
    assert table["Latency"].str.endswith("ms").all()
    (chart,) = at.get("vega_lite_chart")
    spec = json.loads(chart.proto.spec)
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["line", "rule", "text"]


def test_compression_reference_line_is_the_dense_score(db):
    from leaderboard.charts import compression_chart
    from leaderboard.data import Reader
    from leaderboard.posthoc import compression_rows

    rows = compression_rows(Reader(db), "drug-condition", "minilm-l6", "full", 0)
    spec = compression_chart(rows, "Accuracy").to_dict()
    rule = spec["layer"][1]
    (dense,) = spec["datasets"][rule["data"]["name"]]
    assert dense["dense"] == pytest.approx(rows["dense_value"].iloc[0])
    lines = spec["datasets"][spec["layer"][0]["data"]["name"]]
    assert {p["series"] for p in lines} == {
        "magnitude pruning", "Wanda", "magnitude pruning 2:4", "Wanda 2:4", "DSnoT", "WeLore",
        "Sparse Model Soups",
    }  # fmt: skip
