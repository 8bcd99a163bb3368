"""The analysis views on hand-made result rows, checked against scipy and by hand."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import duckdb
import pandas as pd
import pytest
from scipy import stats as sps

from suite.store.comparisons import refresh_comparisons
from suite.store.schema import refresh_latest
from suite.store.store import Store

BUDGET = json.dumps({"epochs": 1.0, "batch_size": 16})


def _row(con, method: str, seed: int, test: float | None, **over) -> None:
    """Insert one cell_runs row plus its primary metric (version `metric_version`)."""
    version = over.pop("metric_version", 1)
    val = over.pop("val", test)
    row = {
        "result_id": uuid.uuid4().hex,
        "cell_id": over.pop("cell_id", f"{method}-{seed}-{uuid.uuid4().hex[:6]}"),
        "status": "ok",
        "matrix": "m",
        "method": method,
        "method_kind": method,
        "family": "low-rank" if method.startswith("lora") else "baseline",
        "model": "tiny",
        "task": "t",
        "task_hash": "h1",
        "method_hash": f"mh-{method}",
        "seed": seed,
        "profile": "cpu-local",
        "budget": BUDGET,
        "primary_metric": "accuracy",
        "higher_is_better": True,
        "test_primary": test,
        "val_primary": val,
        "baseline_test_primary": 0.4,
        "baseline_method": "lora",
        "phase": "final",
        "params": json.dumps({}),
        "lr": 1e-3,
        "trainable_params": 100,
        "total_params": 1000,
        "finished_at": datetime(2026, 1, 1, 0, 0, seed),
        **over,
    }
    cols = list(row)
    con.execute(
        f"INSERT INTO cell_runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
        list(row.values()),
    )
    if test is not None:
        con.execute(
            "INSERT INTO metrics VALUES (?, 'test', ?, ?, ?, ?)",
            [row["result_id"], row["primary_metric"], test, version, row["higher_is_better"]],
        )
    refresh_latest(con, row["cell_id"])  # as Store.write does


SCORES = {
    "lora": [0.80, 0.82, 0.81],
    "full": [0.90, 0.91, 0.93],
    "head": [0.79, 0.83, 0.80],
}


@pytest.fixture()
def db(tmp_path):
    store = Store(tmp_path / "v.duckdb")
    store.init()
    with store.connect() as con:
        for method, values in SCORES.items():
            for seed, value in enumerate(values):
                _row(
                    con,
                    method,
                    seed,
                    value,
                    trainable_params={"head": 10, "full": 1000}.get(method, 100),
                )
        _row(con, "head", 3, None, status="failed", error="boom")
        refresh_comparisons(con)
    return store


def _board(store: Store) -> dict[str, dict]:
    frame = store.query("SELECT * FROM leaderboard")
    return {r["method"]: r for r in frame.to_dict("records")}


def test_mean_std_ci_match_scipy(db):
    board = _board(db)
    for method, values in SCORES.items():
        row = board[method]
        mean, sem = sum(values) / 3, sps.sem(values)
        low, high = sps.t.interval(0.95, 2, loc=mean, scale=sem)
        assert row["n_seeds"] == 3
        assert row["mean"] == pytest.approx(mean)
        assert row["std"] == pytest.approx(sps.tstd(values))
        assert row["ci_low"] == pytest.approx(low) and row["ci_high"] == pytest.approx(high)
        assert row["baseline_value"] == pytest.approx(0.4)
        assert row["trainable_pct"] == pytest.approx(100 * row["trainable_params"] / 1000)
        assert list(row["cell_ids"]) and len(row["cell_ids"]) == 3
    assert board["head"]["n_failed"] == 1 and board["full"]["n_failed"] == 0


def test_paired_comparison_against_lora(db):
    board = _board(db)
    full = sps.ttest_rel(SCORES["full"], SCORES["lora"])
    assert board["full"]["p_value"] == pytest.approx(full.pvalue)
    assert board["full"]["vs_baseline"] == "better"  # p ~ 0.006
    head = sps.ttest_rel(SCORES["head"], SCORES["lora"])
    assert board["head"]["p_value"] == pytest.approx(head.pvalue)
    assert board["head"]["vs_baseline"] == "tie"  # p ~ 0.8: not significant
    assert board["lora"]["vs_baseline"] == "baseline" and board["lora"]["baseline_method"] == "lora"
    assert [board[m]["rank"] for m in ("full", "lora", "head")] == [1, 2, 3]


def test_lower_is_better_flips_the_verdict(tmp_path):
    store = Store(tmp_path / "l.duckdb")
    store.init()
    with store.connect() as con:
        for seed, (a, b) in enumerate([(1.0, 2.0), (1.1, 2.3), (0.9, 2.1)]):
            _row(con, "lora", seed, a, higher_is_better=False, primary_metric="mse")
            _row(con, "full", seed, b, higher_is_better=False, primary_metric="mse")
        refresh_comparisons(con)
    board = _board(store)
    assert board["full"]["vs_baseline"] == "worse" and board["full"]["rank"] == 2
    assert board["lora"]["rank"] == 1


def test_single_seed_has_no_interval_and_no_verdict(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    store.init()
    with store.connect() as con:
        _row(con, "lora", 0, 0.5)
        _row(con, "full", 0, 0.9)
        refresh_comparisons(con)
    board = _board(store)
    assert pd.isna(board["full"]["ci_low"]) and pd.isna(board["full"]["vs_baseline"])


def test_trials_are_kept_out_of_the_leaderboard(tmp_path):
    store = Store(tmp_path / "t.duckdb")
    store.init()
    tuning = json.dumps({"trials": 2, "sampler": "grid", "seed": 0})
    with store.connect() as con:
        for i, val in enumerate([0.6, 0.7]):
            _row(con, "lora", 0, None, val=val, phase="trial", trial_index=i, tuning=tuning,
                 method_hash=f"trial-{i}", cell_id=f"trial-{i}")  # fmt: skip
        selection = json.dumps(
            {"selected_trial": 1, "n_trials": 2, "trial_cell_ids": ["trial-0", "trial-1"]}
        )
        for seed in range(2):
            _row(con, "lora", seed, 0.7, tuning=tuning, selection=selection)
        refresh_comparisons(con)
    board = store.query("SELECT method, n_seeds FROM leaderboard").to_dict("records")
    assert board == [{"method": "lora", "n_seeds": 2}]
    trials = store.query("SELECT trial_index, val_score, selected FROM trials ORDER BY 1")
    assert trials.to_dict("records") == [
        {"trial_index": 0, "val_score": 0.6, "selected": False},
        {"trial_index": 1, "val_score": 0.7, "selected": True},
    ]


def test_stale_when_a_newer_metric_version_exists(tmp_path):
    store = Store(tmp_path / "st.duckdb")
    store.init()
    with store.connect() as con:
        _row(con, "lora", 0, 0.5, metric_version=1, task_hash="old")
        _row(con, "lora", 0, 0.6, metric_version=2, task_hash="new")
    rows = store.query("SELECT task_hash, stale FROM leaderboard ORDER BY 1").to_dict("records")
    assert rows == [{"task_hash": "new", "stale": False}, {"task_hash": "old", "stale": True}]


def test_pareto_front_and_rank_sweep(tmp_path):
    store = Store(tmp_path / "p.duckdb")
    store.init()
    points = {  # method: (score, trainable params, lora rank)
        "head": (0.70, 10, None),
        "lora-r4": (0.80, 100, 4),
        "lora-r8": (0.78, 200, 8),  # more parameters and worse than r4: dominated
        "full": (0.90, 1000, None),
    }
    with store.connect() as con:
        for method, (score, n, r) in points.items():
            params = json.dumps({"r": r} if r else {})
            for seed in range(2):
                _row(con, method, seed, score + 0.01 * seed, trainable_params=n, params=params,
                     size_params=["r"] if r else [])  # fmt: skip
        refresh_comparisons(con)
    front = store.query(
        "SELECT method, on_front FROM pareto WHERE cost_axis = 'trainable_params' ORDER BY 1"
    ).to_dict("records")
    assert {r["method"]: r["on_front"] for r in front} == {
        "full": True,
        "head": True,
        "lora-r4": True,
        "lora-r8": False,
    }
    sweep = store.query("SELECT method, sweep_param, sweep_value, mean FROM rank_sweep ORDER BY 3")
    assert sweep["method"].tolist() == ["lora-r4", "lora-r8"]
    assert sweep["sweep_param"].tolist() == ["r", "r"]
    assert sweep["mean"].tolist() == pytest.approx([0.805, 0.785])
    agg = store.query("SELECT method, n_tasks, mean_rank FROM aggregate ORDER BY mean_rank")
    assert agg["method"].tolist()[0] == "full" and agg["n_tasks"].tolist()[0] == 1


def test_views_work_on_a_plain_read_only_connection(db):
    con = duckdb.connect(str(db.path), read_only=True)
    try:
        for view in ("results", "leaderboard", "pareto", "trials", "rank_sweep", "aggregate"):
            con.execute(f"SELECT * FROM {view}").fetchall()
        assert con.execute("SELECT count(*) FROM leaderboard").fetchone()[0] == 3
    finally:
        con.close()


def test_query_view_command(db):
    import subprocess
    import sys

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "suite.cli", "query", *args, "--db", str(db.path)],
            capture_output=True,
            text=True,
            timeout=300,
        )

    out = run("--view", "leaderboard", "--format", "json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["method"] for r in rows] == ["full", "lora", "head"]  # by rank
    assert {"ci_low", "ci_high", "vs_baseline", "p_value", "cell_ids"} <= set(rows[0])
    table = run("--view", "leaderboard")
    assert table.returncode == 0 and "better" in table.stdout
    bad = run("--view", "leaderboard; drop table cell_runs")
    assert bad.returncode == 2 and "unknown view" in bad.stderr
    assert run().returncode == 2


def _brute_force_front(rows: list[dict]) -> dict[tuple, bool]:
    """on_front by definition: no other point of the partition is at least as good in
    quality and cost and strictly better in one."""
    from suite.store.views import COST_AXES

    points = []
    for r in rows:
        if r["mean"] is None:
            continue
        quality = r["mean"] if r["higher_is_better"] else -r["mean"]
        for axis in COST_AXES:
            if r[axis] is not None:
                part = (
                    r["task"],
                    r["task_hash"],
                    r["model"],
                    r["budget"],
                    r["profile"],
                    r["protocol"],
                    axis,
                )
                points.append((part, r["method"], float(r[axis]), quality))
    front = {}
    for part, method, cost, quality in points:
        front[(*part, method)] = not any(
            o_part == part
            and o_method != method
            and o_q >= quality
            and o_c <= cost
            and (o_q > quality or o_c < cost)
            for o_part, o_method, o_c, o_q in points
        )
    return front


@pytest.mark.parametrize("seed", range(6))
def test_pareto_window_matches_brute_force_front(seed):
    """The pareto view's window formulation equals the pairwise definition, on random
    points with many ties in cost and quality, both metric directions, missing costs and
    missing means."""
    import random

    from suite.store.views import COST_AXES, PARETO

    rng = random.Random(seed)
    rows = []
    for task in ("t1", "t2"):
        higher = {"t1": True, "t2": False}[task]
        for model in ("a", "b"):
            # One budget under two protocols: their points never share a front.
            for budget, protocol in (("b1", "p1"), ("b2", "p1"), ("b1", "p2")):
                for i in range(rng.randint(1, 25)):
                    row = {
                        "task": task, "task_hash": f"h-{task}", "model": model,
                        "method": f"m{i}", "method_hash": f"mh{i}", "budget": budget,
                        "profile": "p", "protocol": protocol, "family": "f", "method_kind": "k", "fidelity": "reference",
                        "matrix": "x",
                        "primary_metric": "acc", "higher_is_better": higher,
                        "mean": None if rng.random() < 0.05 else rng.choice([0.1, 0.2, 0.3, 0.4]),
                        "ci_low": None, "ci_high": None, "stale": False,
                    }  # fmt: skip
                    for axis in COST_AXES:
                        row[axis] = None if rng.random() < 0.1 else rng.choice([1, 2, 3, 5, 8])
                    rows.append(row)
    con = duckdb.connect(":memory:")
    try:
        con.register("incoming", pd.DataFrame(rows))
        con.execute("CREATE TABLE leaderboard AS SELECT * FROM incoming")
        from suite.store.comparisons import TABLES

        for ddl in TABLES:  # the pareto view joins pareto_noise (empty here)
            con.execute(ddl)
        con.execute(PARETO)
        got = {
            (*r[:7], r[7]): r[8]
            for r in con.execute(
                "SELECT task, task_hash, model, budget, profile, protocol, cost_axis, method, "
                "on_front FROM pareto"
            ).fetchall()
        }
    finally:
        con.close()
    expected = _brute_force_front(rows)
    assert got == expected
    assert any(expected.values()) and not all(expected.values())


def test_base_and_training_memory_cost_axes(tmp_path):
    """Base memory is base_bytes; training memory is the breakdown beyond the frozen base
    (trainable weights, gradients, optimiser state, activations and the rest)."""
    store = Store(tmp_path / "m.duckdb")
    store.init()
    memory = {  # method: (score, base bytes, trainable, gradients, optimiser, rest)
        "lora": (0.80, 4000, 100, 100, 200, 1000),
        "qlora": (0.79, 1000, 100, 100, 200, 1100),
        "full": (0.90, 4000, 4000, 4000, 8000, 1500),
    }
    with store.connect() as con:
        for method, (score, base, tw, g, opt, rest) in memory.items():
            for seed in range(2):
                _row(con, method, seed, score + 0.01 * seed, base_bytes=base,
                     mem_frozen_weights_bytes=base, mem_trainable_weights_bytes=tw,
                     mem_gradients_bytes=g, optimizer_state_bytes=opt,
                     mem_activations_other_bytes=rest + seed)  # fmt: skip
        refresh_comparisons(con)
    board = _board(store)
    assert board["qlora"]["base_bytes"] == 1000
    assert board["lora"]["training_memory_bytes"] == 100 + 100 + 200 + 1000.5
    points = store.query(
        "SELECT method, cost_axis, cost, on_front FROM pareto"
        " WHERE cost_axis IN ('base_bytes', 'training_memory_bytes')"
    )
    got = {(r["method"], r["cost_axis"]): (r["cost"], r["on_front"]) for _, r in points.iterrows()}
    assert got[("full", "base_bytes")] == (4000, True)
    assert got[("lora", "base_bytes")] == (4000, False)  # full: the same base, better
    assert got[("qlora", "base_bytes")] == (1000, True)
    assert got[("lora", "training_memory_bytes")] == (1400.5, True)
    assert got[("qlora", "training_memory_bytes")] == (1500.5, False)  # lora: less, better
    assert got[("full", "training_memory_bytes")] == (17500.5, True)
