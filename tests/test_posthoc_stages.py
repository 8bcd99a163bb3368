"""Post-hoc stages through the driver, in this process, on the tiny BERT: artifacts are
saved and checksummed, post-hoc cells hash their inputs' ids, run after training, skip
what is stored, and refuse (never retrain) when an input is missing or its artifact
does not match its checksum."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import duckdb
import pytest

from suite.artifacts import sha256_file
from suite.driver import in_process_executor, plan, run_plan
from suite.registry import Catalog
from suite.store.store import Store

MATRIX = """\
name: posthoc-tiny
models: [tiny-bert]
methods: [lora]
tasks: [drug-condition, drug-sentiment]
seeds: [0]
budget: {max_steps: 2, batch_size: 8}
posthoc:
  - name: merge
    stage: merge
    inputs: {method: lora}
    methods: [task-arithmetic, ties]
  - name: compress
    stage: compress
    inputs: {method: lora, tasks: [drug-condition]}
    calibration: {examples: 8, batch_size: 4}
    methods:
      - {method: magnitude, params: {targets: attention}}
"""


def _rows(db: Path, sql: str, params=None):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def _run(catalog, path: Path, db: Path, rerun: bool = False):
    store = Store(db)
    the_plan = plan(catalog, str(path), store, rerun=rerun)
    summary = run_plan(the_plan, store, in_process_executor(results_dir=db.parent))
    return the_plan, summary


# What the stored run runs: one merge and one compression (each cell evaluates every
# input and result on full validation and test splits, the slow part on this CPU).
RUN_MATRIX = MATRIX.replace("[task-arithmetic, ties]", "[task-arithmetic]")


@pytest.fixture(scope="module")
def stored(tiny_plugins, tmp_path_factory):
    folder = tmp_path_factory.mktemp("posthoc")
    path = folder / "posthoc-tiny.yaml"
    path.write_text(RUN_MATRIX)
    db = folder / "results" / "r.duckdb"
    catalog = Catalog.discover([tiny_plugins])
    the_plan, summary = _run(catalog, path, db)
    return catalog, path, db, the_plan, summary


def test_every_cell_ok_and_the_artifacts_recorded_with_their_checksum(stored):
    _, _, db, the_plan, summary = stored
    assert summary.all_ok, [(r.status, r.error) for r in summary.results]
    assert len(the_plan.posthoc_cells) == 2
    artifacts = _rows(db, "SELECT cell_id, path, bytes, sha256, kind FROM artifacts")
    assert {a[0] for a in artifacts} == {c.cell_id for c in the_plan.cells}
    for _, path, size, sha, kind in artifacts:
        assert Path(path).stat().st_size == size and sha256_file(path) == sha
        assert kind == "adapter"
    merged = _rows(
        db, "SELECT method, task, normalised, own_value FROM merging WHERE status = 'ok'"
    )
    assert sorted((m, t) for m, t, _, _ in merged) == [
        ("task-arithmetic", "drug-condition"), ("task-arithmetic", "drug-sentiment"),
    ]  # fmt: skip
    assert all(n is not None and own is not None for _, _, n, own in merged)
    (level, sparsity) = _rows(db, "SELECT level_label, sparsity FROM compression")[0]
    assert level == "50%" and sparsity == pytest.approx(0.5)


def test_the_source_score_is_the_stored_score_of_the_input_cell(stored):
    """Rebuilt from its artifact, each input scores what its own run stored."""
    _, _, db, _, _ = stored
    pairs = _rows(
        db,
        "SELECT m.own_value, r.test_primary FROM merging m JOIN results r "
        "ON r.task = m.task AND list_contains(m.input_cell_ids, r.cell_id)",
    )
    assert pairs and all(own == pytest.approx(test, abs=1e-9) for own, test in pairs)


def test_a_post_hoc_cell_id_hashes_its_inputs_ids_and_its_own_spec(tiny_plugins, tmp_path):
    catalog = Catalog.discover([tiny_plugins])
    store = Store(tmp_path / "r.duckdb")

    def ids(text: str) -> set[str]:
        path = tmp_path / "m.yaml"
        path.write_text(text)
        return {c.cell_id for c in plan(catalog, str(path), store).posthoc(store).cells}

    base = ids(MATRIX)
    assert len(base) == 3 and ids(MATRIX) == base
    retrained = ids(MATRIX.replace("methods: [lora]", "methods: [{method: lora, lr: 0.002}]"))
    assert not retrained & base  # new input ids: new post-hoc cells
    tweaked = ids(
        MATRIX.replace(
            "[task-arithmetic, ties]", "[task-arithmetic, {method: ties, params: {density: 0.5}}]"
        )
    )
    assert len(tweaked & base) == 2  # only the changed entry moved
    relabelled = ids(MATRIX.replace("name: merge\n", "name: merging\n"))
    assert relabelled == base  # a stage's name is a label, not a setting


def test_a_rerun_skips_every_stored_cell(stored):
    catalog, path, db, _, _ = stored
    again = plan(catalog, str(path), Store(db))
    assert again.todo == []
    phase = again.posthoc(Store(db))
    assert phase.todo == [] and phase.refused == [] and phase.done == 2


def _forget(db: Path, method: str) -> str:
    (cell_id,) = _rows(db, "SELECT cell_id FROM posthoc_results WHERE method = ?", [method])[0]
    con = duckdb.connect(str(db))
    try:
        con.execute("DELETE FROM posthoc_scores WHERE cell_id = ?", [cell_id])
        con.execute("DELETE FROM posthoc_runs WHERE cell_id = ?", [cell_id])
    finally:
        con.close()
    return cell_id


def test_an_input_artifact_whose_checksum_does_not_match_is_refused(stored):
    catalog, path, db, _, _ = stored
    cell_id = _forget(db, "task-arithmetic")
    (artifact,) = _rows(db, "SELECT path FROM artifacts WHERE task = 'drug-condition'")[0]
    backup = Path(artifact).with_suffix(".bak")
    shutil.copy(artifact, backup)
    data = bytearray(Path(artifact).read_bytes())
    data[-1] ^= 0xFF  # same size, one byte changed
    Path(artifact).write_bytes(bytes(data))
    trained_runs = _rows(db, "SELECT count(*) FROM cell_runs")[0][0]
    try:
        _, summary = _run(catalog, path, db)
    finally:
        shutil.move(backup, artifact)
    status, error = _rows(
        db, "SELECT status, error FROM posthoc_results WHERE cell_id = ?", [cell_id]
    )[0]
    assert status == "input_invalid" and "fails its checksum" in error and "refused" in error
    assert _rows(db, "SELECT count(*) FROM cell_runs")[0][0] == trained_runs  # nothing retrained
    assert [r.status for r in summary.results] == ["input_invalid"]


def test_an_input_without_an_artifact_gives_input_missing_and_no_retraining(stored):
    catalog, path, db, _, _ = stored
    cell_id = _forget(db, "task-arithmetic")
    saved = _rows(db, "SELECT * FROM artifacts WHERE task = 'drug-sentiment'")[0]
    con = duckdb.connect(str(db))
    con.execute("DELETE FROM artifacts WHERE task = 'drug-sentiment'")
    con.close()
    trained_runs = _rows(db, "SELECT count(*) FROM cell_runs")[0][0]
    try:
        _, summary = _run(catalog, path, db)
    finally:
        con = duckdb.connect(str(db))
        con.execute(f"INSERT INTO artifacts VALUES ({', '.join('?' * len(saved))})", list(saved))
        con.close()
    status, error = _rows(
        db, "SELECT status, error FROM posthoc_results WHERE cell_id = ?", [cell_id]
    )[0]
    assert status == "input_missing"
    assert "saved no artifact" in error and "never retrain" in error
    assert _rows(db, "SELECT count(*) FROM cell_runs")[0][0] == trained_runs
    # the cell runs once its input is back
    _, summary = _run(catalog, path, db)
    assert [r.status for r in summary.results] == ["ok"]


def test_a_stage_naming_an_unknown_method_entry_is_a_spec_error(tiny_plugins, tmp_path):
    from suite.errors import SpecError

    path = tmp_path / "bad.yaml"
    path.write_text(MATRIX.replace("inputs: {method: lora}", "inputs: {method: lroa}"))
    with pytest.raises(SpecError, match="unknown method entry 'lroa'; did you mean 'lora'"):
        plan(Catalog.discover([tiny_plugins]), str(path), Store(tmp_path / "r.duckdb"))
    bad = tmp_path / "bad2.yaml"
    bad.write_text(
        textwrap.dedent(MATRIX).replace(
            "[task-arithmetic, ties]", "[ties, {method: ties, label: t2, params: {density: 2}}]"
        )
    )
    with pytest.raises(SpecError, match="density"):
        plan(Catalog.discover([tiny_plugins]), str(bad), Store(tmp_path / "r.duckdb"))
