"""Equal tuning budgets: K trials per method from its own search space, selected on validation.

A matrix with `tuning: {trials: K, sampler: grid|random|latin, seed}` runs in two phases:

1. trials: for every (model, method, task), K configurations drawn from the method's
   declared `search_space` (the same draw for every task and model), each trained once on
   the matrix's first seed and evaluated on the validation split only (the runner does
   not evaluate trial cells on test at all);
2. finals: the configuration with the best validation score (ties: the earlier trial)
   runs with every seed of the matrix; only these rows reach the leaderboard.

Selection reads nothing but `val_primary` of the trial rows, so test metrics cannot
influence it. The tuning budget and the selection are stored with every row.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from suite.cells import Cell, PhaseCells
from suite.registry import Catalog
from suite.resolve import ResolvedMethod, apply_ties, implementation_chain
from suite.specs.matrix import MatrixSpec, TuningSpec
from suite.specs.method import TRAINING_KEYS, SearchDim

Config = dict[str, Any]


def search_space(catalog: Catalog, method: ResolvedMethod) -> dict[str, SearchDim]:
    """The method's own search space: the first one declared along its `kind` chain."""
    for entry in implementation_chain(catalog, catalog.methods.get(method.name)):
        if entry.spec.search_space:
            return dict(entry.spec.search_space)
    return {}


def _grid_values(dim: SearchDim, k: int) -> list[Any]:
    if dim.choices is not None:
        return list(dim.choices)
    low, high = dim.log_uniform or dim.uniform
    if k == 1 or low == high:
        return [float(math.sqrt(low * high) if dim.log_uniform else (low + high) / 2)]
    if dim.log_uniform:
        return [float(v) for v in np.geomspace(low, high, k)]
    return [float(v) for v in np.linspace(low, high, k)]


def _draw(dim: SearchDim, rng: np.random.Generator) -> Any:
    # The random sampler's arithmetic, kept as it is: published protocols' draws depend on it.
    if dim.choices is not None:
        value = dim.choices[int(rng.integers(len(dim.choices)))]
        return value.item() if isinstance(value, np.generic) else value
    if dim.log_uniform:
        low, high = dim.log_uniform
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    return float(rng.uniform(*dim.uniform))


def _at(dim: SearchDim, u: float) -> Any:
    """The value at quantile u in [0, 1) of a dimension (log-spaced for log_uniform)."""
    if dim.choices is not None:
        value = dim.choices[min(int(u * len(dim.choices)), len(dim.choices) - 1)]
        return value.item() if isinstance(value, np.generic) else value
    if dim.log_uniform:
        low, high = dim.log_uniform
        return float(math.exp(math.log(low) + u * (math.log(high) - math.log(low))))
    low, high = dim.uniform
    return float(low + u * (high - low))


def _latin(space: dict[str, SearchDim], names: list[str], k: int, rng) -> list[Config]:
    """K draws, one in each of the K equal strata of every dimension (Latin hypercube).

    Independent draws can all land in one corner: four log-uniform learning rates fall in
    the same quarter of the range one time in 64. Here every quarter gets exactly one, so
    a method's score cannot hinge on that luck; the strata are paired across dimensions
    by independent permutations, and a draw is uniform within its stratum (choices: each
    stratum's middle, so every choice gets K / n of the trials, give or take one)."""
    strata = {n: rng.permutation(k) for n in names}
    configs = []
    for i in range(k):
        config = {}
        for n in names:
            offset = 0.5 if space[n].choices is not None else rng.uniform()
            config[n] = _at(space[n], (strata[n][i] + offset) / k)
        configs.append(config)
    return configs


def _rng(tuning: TuningSpec, key: str) -> np.random.Generator:
    digest = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
    return np.random.default_rng([tuning.seed, digest])


def sample_configs(space: dict[str, SearchDim], tuning: TuningSpec, key: str) -> list[Config]:
    """Up to `tuning.trials` configurations; a method without a search space gets one ({}).

    grid: the Cartesian product (continuous dimensions at K points, log-spaced for
    log_uniform), subsampled to K without replacement when larger. random: K independent
    draws. latin: K draws stratified along every dimension (`_latin`). All are seeded by
    the tuning seed and `key` (the method's label), so every task and model sees the same
    configurations of a method. With `default_first`, the first configuration is the
    method's own ({}: nothing changed) and the sampler draws the other K - 1.
    """
    if not space:
        return [{}]
    if tuning.default_first:
        rest = tuning.model_copy(update={"trials": tuning.trials - 1, "default_first": None})
        return [{}, *(_sampled(space, rest, key) if rest.trials else [])]
    return _sampled(space, tuning, key)


def _sampled(space: dict[str, SearchDim], tuning: TuningSpec, key: str) -> list[Config]:
    """`tuning.trials` configurations drawn by its sampler (`sample_configs`)."""
    names = sorted(space)
    rng = _rng(tuning, key)
    if tuning.sampler == "random":
        return [{n: _draw(space[n], rng) for n in names} for _ in range(tuning.trials)]
    if tuning.sampler == "latin":
        return _latin(space, names, tuning.trials, rng)
    grid = list(itertools.product(*(_grid_values(space[n], tuning.trials) for n in names)))
    if len(grid) > tuning.trials:
        grid = [grid[i] for i in sorted(rng.choice(len(grid), tuning.trials, replace=False))]
    return [dict(zip(names, point, strict=True)) for point in grid]


def apply_config(method: ResolvedMethod, config: Config) -> ResolvedMethod:
    """The method with a trial's values: lr / weight_decay tune the optimiser, the rest params."""
    training = {k: float(v) for k, v in config.items() if k in TRAINING_KEYS}
    params = {**method.params, **{k: v for k, v in config.items() if k not in TRAINING_KEYS}}
    return method.model_copy(update={**training, "params": apply_ties(params, method.ties)})


def _group_key(cell: Cell) -> tuple[str, str, str]:
    return (cell.model.name, cell.method.label, cell.task.name)


def trial_cells(catalog: Catalog, matrix: MatrixSpec, cells: list[Cell]) -> list[Cell]:
    """K trial cells per (model, method, task), trained on the matrix's first seed."""
    assert matrix.tuning is not None
    # What a matrix entry pins (params, lr) is not tuned: `lora-r4` stays rank 4.
    pinned = {e.display: {*e.params, *(["lr"] if e.lr else [])} for e in matrix.entries()}
    out = []
    for cell in cells:
        if cell.seed != matrix.seeds[0]:
            continue
        fixed = pinned.get(cell.method.label, set())
        space = {k: v for k, v in search_space(catalog, cell.method).items() if k not in fixed}
        for i, config in enumerate(sample_configs(space, matrix.tuning, cell.method.label)):
            out.append(
                cell.model_copy(
                    update={
                        "method": apply_config(cell.method, config),
                        "phase": "trial",
                        "trial_index": i,
                        "tuning": matrix.tuning,
                        "selection": {"config": config},
                    }
                )
            )
    return out


def select(scores: list[float | None], higher_is_better: bool) -> int | None:
    """Index of the best validation score (ties: the earliest); None if every trial failed."""
    valid = [(i, s) for i, s in enumerate(scores) if s is not None and not math.isnan(s)]
    if not valid:
        return None
    sign = 1.0 if higher_is_better else -1.0
    return max(valid, key=lambda item: (sign * item[1], -item[0]))[0]


def final_cells(
    cells: list[Cell], trials: list[Cell], val_scores: dict[str, float | None]
) -> list[Cell]:
    """Every seed of the selected configuration of each (model, method, task).

    `val_scores` maps trial cell ids to their validation score; nothing else is consulted.
    Groups whose trials all failed get no final cells (their trials show the failures).
    """
    by_group: dict[tuple, list[Cell]] = {}
    for trial in sorted(trials, key=lambda c: c.trial_index or 0):
        by_group.setdefault(_group_key(trial), []).append(trial)
    out = []
    for cell in cells:
        group = by_group.get(_group_key(cell), [])
        scores = [val_scores.get(t.cell_id) for t in group]
        best = select(scores, cell.task.metric(cell.task.primary_metric).higher_is_better)
        if best is None:
            continue
        chosen = group[best]
        selection = {
            "selected_trial": best,
            "n_trials": len(group),
            "val_score": scores[best],
            "selected_on": "validation",
            "config": (chosen.selection or {}).get("config", {}),
            "trial_cell_ids": [t.cell_id for t in group],
        }
        update = {"method": chosen.method, "phase": "final", "tuning": chosen.tuning}
        out.append(cell.model_copy(update={**update, "selection": selection}))
    return out


def validation_scores(store, cell_ids: list[str]) -> dict[str, float | None]:
    """The trials' validation scores (primary metric), read from the store: only `val_primary`."""
    if not cell_ids or not store.path.exists():
        return {}
    frame = store.query(
        "SELECT cell_id, val_primary FROM results WHERE status = 'ok' "
        "AND cell_id IN (SELECT unnest(?))",
        [cell_ids],
    )
    return {
        row.cell_id: (None if row.val_primary is None else float(row.val_primary))
        for row in frame.itertuples()
    }


def finals_phase(cells: list[Cell], trials: list[Cell], rerun: bool) -> Callable[[Any], PhaseCells]:
    """The driver's second phase: select from the stored trials, and leave out the finals
    already stored ok (they are still reported)."""

    def phase(store) -> PhaseCells:
        finals = final_cells(cells, trials, validation_scores(store, [t.cell_id for t in trials]))
        done = set() if rerun else store.ok_cell_ids(c.cell_id for c in finals)
        return PhaseCells(finals, [c for c in finals if c.cell_id not in done])

    return phase
