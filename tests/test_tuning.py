"""Equal tuning budgets: sampling, selection on validation only, trials -> finals end to end."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import duckdb
import pytest

from suite.cells import ResolvedMethod
from suite.registry import Catalog
from suite.specs.matrix import TuningSpec
from suite.specs.method import SearchDim
from suite.tuning import apply_config, sample_configs, select

SPACE = {
    "lr": SearchDim(log_uniform=(1e-4, 1e-2)),
    "r": SearchDim(choices=[4, 8, 16]),
}


def test_random_draws_are_seeded_and_in_bounds():
    tuning = TuningSpec(trials=5, sampler="random", seed=3)
    first = sample_configs(SPACE, tuning, "lora")
    assert first == sample_configs(SPACE, tuning, "lora")
    assert first != sample_configs(SPACE, TuningSpec(trials=5, sampler="random", seed=4), "lora")
    assert len(first) == 5
    assert all(1e-4 <= c["lr"] <= 1e-2 and c["r"] in (4, 8, 16) for c in first)


def test_random_draws_of_a_published_protocol_do_not_change():
    """league-v1's LT-SFT trials (stored, published): every learning rate in 4e-5..9.2e-5."""
    space = {
        "lr": SearchDim(log_uniform=(2e-5, 5e-4)),
        "density": SearchDim(choices=[0.005, 0.01, 0.02]),
    }
    drawn = sample_configs(space, TuningSpec(trials=4, sampler="random", seed=0), "lt-sft")
    assert [c["density"] for c in drawn] == [0.02, 0.01, 0.01, 0.02]
    assert [c["lr"] for c in drawn] == pytest.approx(
        [
            6.639843402909501e-05,
            9.210514787339175e-05,
            3.9539080371868864e-05,
            9.131181911097191e-05,
        ]
    )


def test_latin_puts_one_draw_in_every_stratum():
    low, high = 2e-5, 5e-4
    space = {"lr": SearchDim(log_uniform=(low, high)), "r": SearchDim(choices=[4, 8, 16])}
    for seed in range(20):
        tuning = TuningSpec(trials=6, sampler="latin", seed=seed)
        drawn = sample_configs(space, tuning, "lt-sft")
        assert drawn == sample_configs(space, tuning, "lt-sft")
        quantiles = [math.log(c["lr"] / low) / math.log(high / low) for c in drawn]
        assert sorted(int(q * 6) for q in quantiles) == list(range(6))  # one per sixth
        assert sorted(c["r"] for c in drawn) == [4, 4, 8, 8, 16, 16]  # each choice twice
    uniform = sample_configs(
        {"w": SearchDim(uniform=(0.0, 1.0))}, TuningSpec(trials=4, sampler="latin"), "m"
    )
    assert sorted(int(c["w"] * 4) for c in uniform) == [0, 1, 2, 3]


def test_grid_is_a_subsample_of_the_product():
    one_dim = sample_configs({"lr": SPACE["lr"]}, TuningSpec(trials=3, sampler="grid"), "m")
    assert [c["lr"] for c in one_dim] == pytest.approx([1e-4, 1e-3, 1e-2])
    both = sample_configs(SPACE, TuningSpec(trials=4, sampler="grid"), "m")
    assert len(both) == 4 and len({json.dumps(c, sort_keys=True) for c in both}) == 4
    assert sample_configs({}, TuningSpec(trials=4), "m") == [{}]  # nothing to tune


def test_apply_config_routes_training_keys():
    method = ResolvedMethod(
        label="lora", name="lora", kind="lora", family="low-rank", implementation="x:y",
        params={"r": 8, "alpha": 16}, lr=3e-3, weight_decay=0.0,
    )  # fmt: skip
    tuned = apply_config(method, {"lr": 1e-4, "r": 4})
    assert tuned.lr == 1e-4 and tuned.params == {"r": 4, "alpha": 16}


def test_select_is_on_validation_with_direction_and_ties():
    assert select([0.5, 0.7, 0.7, None], higher_is_better=True) == 1  # tie: earlier trial
    assert select([0.5, 0.7, math.nan], higher_is_better=False) == 0
    assert select([None, math.nan], higher_is_better=True) is None


def _write_matrix(folder: Path) -> Path:
    path = folder / "tuned.yaml"
    path.write_text(
        textwrap.dedent("""\
        name: tuned
        models: [tiny-bert]
        methods: [head, lora]
        tasks: [drug-condition]
        seeds: [0, 1]
        tuning: {trials: 3, sampler: random, seed: 0}
        budget: {max_steps: 2, batch_size: 8}
        """)
    )
    return path


def _in_process():
    from suite.scheduler.local import LocalExecutor

    return LocalExecutor()


def test_trials_then_finals_and_test_never_steers_selection(tiny_plugins: Path, tmp_path: Path):
    from suite.driver import plan, run_plan
    from suite.store.store import Store

    store = Store(tmp_path / "t.duckdb")
    catalog = Catalog.discover([tiny_plugins])
    the_plan = plan(catalog, str(_write_matrix(tmp_path)), store)
    assert len(the_plan.todo) == 6 and {c.phase for c in the_plan.todo} == {"trial"}
    summary = run_plan(the_plan, store, _in_process())
    assert summary.all_ok and len(summary.results) == 6 + 4

    con = duckdb.connect(str(store.path), read_only=True)
    try:
        # Trials are never scored on test: nothing for selection to peek at.
        assert con.execute(
            "SELECT count(*) FROM metrics JOIN cell_runs USING (result_id) "
            "WHERE phase = 'trial' AND split = 'test'"
        ).fetchone() == (0,)
        # Their test scores are kept apart (split trial_test) for the tuning-budget curves.
        assert con.execute(
            "SELECT count(*) FROM trials WHERE trial_test_score IS NOT NULL"
        ).fetchone() == (6,)
        curves = con.execute("SELECT method, max(k) FROM tuning_curves GROUP BY 1 ORDER BY 1")
        assert curves.fetchall() == [("head", 3), ("lora", 3)]
        trials = con.execute(
            "SELECT method, trial_index, val_score, lr, selected FROM trials ORDER BY 1, 2"
        ).fetchall()
        finals = con.execute(
            "SELECT method, seed, lr, selection, tuning FROM results WHERE phase = 'final'"
        ).fetchall()
        board = con.execute("SELECT method, n_seeds, mean, ci_low FROM leaderboard").fetchall()
    finally:
        con.close()
    assert len(trials) == 6 and len(finals) == 4
    for method in ("head", "lora"):
        mine = [t for t in trials if t[0] == method]
        best = max(mine, key=lambda t: (t[2], -t[1]))
        assert [t[4] for t in mine] == [t is best for t in mine]
        for _, _, lr, selection, tuning in (f for f in finals if f[0] == method):
            sel = json.loads(selection)
            assert sel["selected_trial"] == best[1] and sel["selected_on"] == "validation"
            assert lr == pytest.approx(best[3]) and json.loads(tuning)["trials"] == 3
    assert sorted((m, n) for m, n, *_ in board) == [("head", 2), ("lora", 2)]


def test_selection_ignores_test_scores(tmp_path: Path):
    """Trial rows whose test scores invert their validation ranking: selection follows val."""
    from suite.store.schema import rebuild_latest
    from suite.store.store import Store
    from suite.tuning import validation_scores

    store = Store(tmp_path / "s.duckdb")
    store.init()
    with store.connect() as con:
        for i, (val, test) in enumerate([(0.9, 0.1), (0.5, 0.99), (0.7, 0.5)]):
            con.execute(
                "INSERT INTO cell_runs (result_id, cell_id, status, phase, val_primary, "
                "test_primary, finished_at) VALUES (?, ?, 'ok', 'trial', ?, ?, now())",
                [f"r{i}", f"c{i}", val, test],
            )
        rebuild_latest(con)
    scores = validation_scores(store, ["c0", "c1", "c2"])
    assert scores == {"c0": 0.9, "c1": 0.5, "c2": 0.7}
    assert select([scores[f"c{i}"] for i in range(3)], higher_is_better=True) == 0


def test_pinned_entry_params_are_not_tuned():
    from suite.cells import expand
    from suite.specs.matrix import MatrixSpec
    from suite.tuning import trial_cells

    catalog = Catalog.discover()
    matrix = MatrixSpec(
        name="m", models=["minilm-l6"], tasks=["drug-condition"], seeds=[0, 1],
        methods=["lora", {"method": "lora", "label": "lora-r4", "params": {"r": 4}}],
        tuning=TuningSpec(trials=3, sampler="random"),
    )  # fmt: skip
    trials = trial_cells(catalog, matrix, expand(matrix, catalog))
    assert len(trials) == 6 and {t.phase for t in trials} == {"trial"}
    pinned = [t for t in trials if t.method.label == "lora-r4"]
    assert {t.method.params["r"] for t in pinned} == {4}
    assert len({t.method.lr for t in pinned}) == 3  # lr is still tuned
    assert {t.seed for t in trials} == {0}


def test_default_first_tries_the_method_s_own_configuration_then_draws_the_rest():
    """league-v1's random draws can all miss where a method works (LT-SFT, AdaLoRA,
    PiSSA: docs/league.md); with `default_first` trial 0 is the method as its authors
    ship it, and the sampler draws K - 1 more, exactly as it would draw K - 1 alone."""
    latin = TuningSpec(trials=4, sampler="latin", seed=0)
    first = TuningSpec(trials=4, sampler="latin", seed=0, default_first=True)
    drawn = sample_configs(SPACE, first, "lora")
    assert drawn[0] == {} and len(drawn) == 4
    assert drawn[1:] == sample_configs(SPACE, latin.model_copy(update={"trials": 3}), "lora")
    one = TuningSpec(trials=1, sampler="random", default_first=True)
    assert sample_configs(SPACE, one, "lora") == [{}]
    assert sample_configs({}, first, "lora") == [{}]


def test_default_first_trial_0_is_the_default_method_and_unset_moves_no_cell_id():
    from suite.cells import expand
    from suite.specs.matrix import MatrixSpec
    from suite.store.protocols import budget_words
    from suite.tuning import trial_cells

    catalog = Catalog.discover()

    def matrix(**tuning):
        return MatrixSpec(
            name="m", models=["minilm-l6"], tasks=["drug-condition"], seeds=[0],
            methods=["lora"], tuning=TuningSpec(trials=3, **tuning),
        )  # fmt: skip

    cells = expand(matrix(), catalog)
    plain = trial_cells(catalog, matrix(), cells)
    unset = trial_cells(catalog, matrix(default_first=None), cells)
    assert [t.cell_id for t in plain] == [t.cell_id for t in unset]
    ours = trial_cells(catalog, matrix(default_first=True), cells)
    assert ours[0].method == cells[0].method and ours[0].selection == {"config": {}}
    assert {t.method.lr for t in ours[1:]}.isdisjoint({cells[0].method.lr})
    words = budget_words({"epochs": 2}, {"trials": 3, "default_first": True}, [0])
    assert "(trial 0: each method's defaults)" in words
