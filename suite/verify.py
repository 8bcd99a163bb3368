"""`peftbench verify --published N`: rerun N published cells and say how far each moved.

The published rows name their matrix; the matrix is expanded again with today's code (with
the published trials loaded into a scratch store, so a tuned protocol selects its finals
from them exactly as the league did). A published cell whose id the code no longer
expands to is reported as stale (its method, task or budget changed since), not rerun.
The chosen cells run into a second scratch store; each is compared with its published row
on the primary metric (test; validation for a tuning trial) and on its per-example
predictions, and on whether it ran on the same machine (the recorded hardware's stable
facts; the calibration, which moves run to run, is not compared).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from suite.cells import Cell
from suite.registry import Catalog
from suite.store.published import (
    DEFAULT_TRACK,
    PublishedError,
    load_published,
    read_manifest,
    track_of,
)
from suite.store.schema import MACHINE_KEY
from suite.store.store import Store

# Within this of the published score (absolute, on the primary metric) a rerun on the
# same machine counts as reproduced: CPU kernels are deterministic run to run,
# so the expected move there is 0; the tolerance absorbs a changed library build.
TOLERANCE = 0.005


@dataclass(frozen=True)
class Moved:
    cell_id: str
    title: str
    phase: str
    split: str
    published: float | None
    rerun: float | None
    changed_predictions: int | None
    examples: int | None
    same_machine: bool | None
    status: str  # exact | within tolerance | moved | failed | stale

    @property
    def delta(self) -> float | None:
        if self.published is None or self.rerun is None:
            return None
        return self.rerun - self.published


def training_manifest(folder: Path) -> dict:
    """The folder's checked manifest, if it publishes trained cells (what verify reruns)."""
    manifest = read_manifest(folder)
    track = track_of(manifest).track
    if track != DEFAULT_TRACK:
        raise PublishedError(
            f"{folder} publishes the {track} track; verify reruns {DEFAULT_TRACK} cells only"
        )
    return manifest


def pick(folder: Path, n: int, seed: int) -> list[dict]:
    """N published ok cells drawn at random (seeded), as dicts of their published rows.

    The draw takes turns over the phases (trial, final, single...), so any n at least
    the number of phases checks every kind of cell: a final is rerun from the published
    trials' selection, a trial from its own sampled hyperparameters, and each can break
    on its own."""
    import duckdb

    training_manifest(folder)
    rows = duckdb.sql(
        f"SELECT * FROM read_parquet('{folder / 'cell_runs.parquet'}') WHERE status = 'ok' "
        "ORDER BY cell_id"
    ).df()
    rng = random.Random(seed)
    queues = []
    for phase in sorted(set(rows["phase"])):
        members = [i for i in range(len(rows)) if rows["phase"].iloc[i] == phase]
        rng.shuffle(members)
        queues.append(members)
    chosen: list[int] = []
    while len(chosen) < min(n, len(rows)):
        for queue in queues:
            if queue and len(chosen) < n:
                chosen.append(queue.pop())
    return [rows.iloc[i].to_dict() for i in sorted(chosen)]


def expected_cells(catalog: Catalog, matrix: str, published: Store) -> dict[str, Cell]:
    """Every cell today's code expands the matrix to, finals selected from published trials."""
    from suite.cells import expand_matrix
    from suite.driver import plan
    from suite.tuning import final_cells, validation_scores

    the_plan = plan(catalog, matrix, published)
    cells = {c.cell_id: c for c in the_plan.cells}
    if the_plan.phases:  # tuned: the plan's cells are the trials; the finals come from them
        entry = catalog.matrix_from_path_or_name(matrix)
        seeds = expand_matrix(entry.spec, catalog, entry).cells
        scores = validation_scores(published, list(cells))
        cells.update({c.cell_id: c for c in final_cells(seeds, the_plan.cells, scores)})
    return cells


def compare(row: dict, cell: Cell | None, rerun_store: Store, published: Store) -> Moved:
    """One published row against its rerun (or stale, when the code lost its cell)."""
    split = "validation" if row.get("phase") == "trial" else "test"
    column = "val_primary" if split == "validation" else "test_primary"
    title = f"{row['method']} x {row['task']} seed {row['seed']}"
    phase = row.get("phase") or "single"
    if cell is None:
        return Moved(
            row["cell_id"], title, phase, split, row[column], None, None, None, None, "stale"
        )
    new = rerun_store.query(
        f"SELECT result_id, status, {column} AS score, hardware_profile_id FROM results "
        "WHERE cell_id = ?",
        [row["cell_id"]],
    )
    if new.empty or new.status.item() != "ok":
        return Moved(
            row["cell_id"], title, phase, split, row[column], None, None, None, None, "failed"
        )
    changed, examples = _changed_predictions(
        published, row["result_id"], rerun_store, new.result_id.item(), split
    )
    score = float(new.score.item())
    delta = abs(score - float(row[column]))
    status = "exact" if delta == 0 and changed == 0 else (
        "within tolerance" if delta <= TOLERANCE else "moved"
    )  # fmt: skip
    same = same_machine(
        machine(published, row.get("hardware_profile_id")),
        machine(rerun_store, new.hardware_profile_id.item()),
    )
    return Moved(
        row["cell_id"], title, phase, split, row[column], score, changed, examples, same, status
    )


def machine(store: Store, profile_id: str | None) -> dict | None:
    """The stable facts (schema.MACHINE_KEY) of a recorded hardware profile; None where the
    row recorded none."""
    if profile_id is None:
        return None
    frame = store.query("SELECT * FROM hardware_profiles WHERE profile_id = ?", [profile_id])
    if frame.empty:
        return None
    row = frame.iloc[0]
    return {k: None if pd.isna(row[k]) else row[k] for k in MACHINE_KEY if k in frame.columns}


def same_machine(published: dict | None, rerun: dict | None) -> bool | None:
    """Whether two recordings are the same machine: equal stable facts (where both recorded
    a fact), never the calibration, which moves run to run; None where one is unknown."""
    if published is None or rerun is None:
        return None
    shared = published.keys() & rerun.keys()
    return all(published[k] == rerun[k] for k in shared)


def _changed_predictions(published: Store, old_id: str, rerun: Store, new_id: str, split: str):
    sql = "SELECT example, pred_num, pred_text FROM predictions WHERE result_id = ? AND split = ?"
    old = published.query(sql, [old_id, split]).set_index("example")
    new = rerun.query(sql, [new_id, split]).set_index("example")
    if old.empty or new.empty:
        return None, None
    joined = old.merge(new, left_index=True, right_index=True, suffixes=("_old", "_new"))
    num = joined.pred_num_old.fillna(-1e308) != joined.pred_num_new.fillna(-1e308)
    text = joined.pred_text_old.fillna("") != joined.pred_text_new.fillna("")
    return int((num | text).sum()), int(len(joined))


def verify(
    catalog: Catalog, folder: Path, n: int, seed: int, scratch: Path, executor
) -> list[Moved]:
    """Rerun `n` random published cells of `folder`; `executor` runs them (see driver)."""
    from suite.driver import Plan, run_plan

    scratch.mkdir(parents=True, exist_ok=True)
    published = Store(scratch / "published.duckdb")
    load_published(published, folder)
    rows = pick(folder, n, seed)
    expected: dict[str, Cell] = {}
    for matrix in sorted({r["matrix"] for r in rows}):
        expected.update(expected_cells(catalog, matrix, published))
    todo = [expected[r["cell_id"]] for r in rows if r["cell_id"] in expected]
    rerun_store = Store(scratch / "rerun.duckdb")
    if todo:
        run_plan(Plan("verify", todo, todo), rerun_store, executor)
    return [compare(r, expected.get(r["cell_id"]), rerun_store, published) for r in rows]
