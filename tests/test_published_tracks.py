"""Published continual and federated protocols: written from a store the tracks' own
store code fills with hand-made results (no training), read back into a fresh store
with the same rows and views, resumed from (a run of the matrix has nothing left to
do), shown as published on their pages; and the training publication of the league
still loads as it was written."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from suite.cli import app
from suite.driver import plan
from suite.registry import Catalog
from suite.results import CellReport
from suite.store.published import (
    TRACKS,
    PublishedError,
    load_published,
    publish,
    read_manifest,
)
from suite.store.store import Store
from tests import test_continual_board as continual
from tests import test_federated_board as federated
from tests.test_continual import MATRIX as CONTINUAL_MATRIX
from tests.test_continual import _write as write_continual_matrix
from tests.test_federated_run import write_matrix as write_federated_matrix

LEAGUE = Path(__file__).resolve().parents[1] / "leaderboard" / "published" / "league-v1"


def _continual_store(folder: Path, plugins: Path) -> tuple[Store, Path]:
    matrix = write_continual_matrix(folder, CONTINUAL_MATRIX)
    store = Store(folder / "c.duckdb")
    store.init()
    for cell in plan(Catalog.discover([plugins]), str(matrix), store).cells:
        b, r = continual.MADE[cell.strategy]
        report = CellReport(measured=continual._measured(cell, b, r))
        store.write_continual(cell, report, {"git_sha": "abc"}, None)
    return store, matrix


def _federated_store(folder: Path, plugins: Path) -> tuple[Store, Path]:
    matrix = write_federated_matrix(folder)
    store = Store(folder / "f.duckdb")
    store.init()
    for cell in plan(Catalog.discover([plugins]), str(matrix), store).cells:
        report = CellReport(measured=federated._measured(cell))
        store.write_federated(cell, report, {"git_sha": "abc"}, None)
    return store, matrix


def _protocol(store: Store, table: str) -> str:
    return store.query(f"SELECT DISTINCT protocol FROM {table}").protocol.item()


@pytest.fixture(scope="module")
def stores(tiny_plugins, tmp_path_factory):
    root = tmp_path_factory.mktemp("published-tracks")
    (root / "c").mkdir()
    (root / "f").mkdir()
    return {
        "continual": _continual_store(root / "c", tiny_plugins),
        "federated": _federated_store(root / "f", tiny_plugins),
    }


def _same(a: Store, b: Store, sql: str) -> None:
    left, right = a.query(sql), b.query(sql)
    assert len(left) > 0 and left.equals(right), (left, right)


def _loaded(source: Store, folder: Path, manifest: dict, *views: str):
    """The folder loaded into a fresh store: its attempt rows all new and marked with the
    folder's name, the views' rows as in the source; loading again adds nothing."""
    fresh = Store(folder.parent / f"{folder.name}-fresh.duckdb")
    report = load_published(fresh, folder)
    track = TRACKS[manifest["track"]]
    assert (report.track, report.rows) == (track.track, manifest[track.unit])
    for sql in views:
        _same(source, fresh, sql)
    assert set(fresh.query(f"SELECT origin FROM {track.runs}").origin) == {folder.name}
    assert set(load_published(fresh, folder).added.values()) == {0}
    return fresh, report


def _dry_run(matrix: Path, db: Path, plugins: Path) -> str:
    args = ["run", str(matrix), "--db", str(db), "--plugins", str(plugins), "--dry-run"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    return " ".join(out.output.split())


def test_a_continual_protocol_published_and_loaded_has_the_same_cells_and_resumes(
    stores, tiny_plugins, tmp_path
):
    source, matrix = stores["continual"]
    protocol = _protocol(source, "continual_runs")
    manifest = publish(source, protocol, tmp_path / "cont-v1")
    assert manifest["track"] == "continual" and manifest["cells"] == 2
    assert manifest["status"] == {"ok": 2} and manifest["commits"] == ["abc"]
    assert manifest["strategies"] == ["per-task", "sequential"]
    # A continual cell is one process: its wall time x its threads.
    assert manifest["cpu_hours_basis"] == {"wall_x_threads": 2}
    assert manifest["tasks"] == ["drug-condition", "drug-sentiment"]
    assert manifest["methods"]["lora"]["method_version"] == "1"
    assert set(manifest["files"]) == {
        "continual_runs.parquet", "continual_scores.parquet", "hardware_profiles.parquet"
    }  # fmt: skip
    assert read_manifest(tmp_path / "cont-v1") == manifest

    fresh, report = _loaded(
        source, tmp_path / "cont-v1", manifest,
        "SELECT * EXCLUDE (origin) FROM continual_results ORDER BY cell_id",
        "SELECT * FROM continual_matrix ORDER BY cell_id, stage, position",
    )  # fmt: skip
    assert report.added["continual_scores"] == 2 * 6  # (baseline + 2 stages) x 2 tasks
    # A run of the matrix resumes from the published cells: nothing left to run.
    said = _dry_run(matrix, fresh.path, tiny_plugins)
    assert "2 cells, 2 already stored ok, 0 to run" in said, said


def test_a_federated_protocol_published_and_loaded_has_the_same_rounds_and_resumes(
    stores, tiny_plugins, tmp_path
):
    """The rounds come without their global adapters: a complete run needs none, so a
    run of the matrix skips it (it restarted every run at round 0 before)."""
    source, matrix = stores["federated"]
    protocol = _protocol(source, "federated_rounds")
    manifest = publish(source, protocol, tmp_path / "fed-v1")
    assert manifest["track"] == "federated" and manifest["rounds"] == 8
    assert manifest["runs"] == 2 and manifest["aggregations"].keys() == {"fedavg", "fedsvd"}
    assert manifest["methods"]["lora"]["method_version"] == "1"
    assert set(manifest["files"]) == {"federated_rounds.parquet", "hardware_profiles.parquet"}
    assert manifest["cpu_hours_basis"] == {"measured": 8}

    fresh, _ = _loaded(
        source, tmp_path / "fed-v1", manifest,
        "SELECT * EXCLUDE (origin) FROM federated_curve ORDER BY fed_run, round",
        "SELECT * EXCLUDE (origin) FROM federated_results ORDER BY fed_run",
    )  # fmt: skip
    said = _dry_run(matrix, fresh.path, tiny_plugins)
    assert "8 already stored ok, 0 to run" in said, said


def test_the_federated_export_keeps_every_rounds_latest_attempt_failed_ones_too(stores, tmp_path):
    """A round tried twice is published once (its latest attempt), a failed round too."""
    import shutil

    source, _ = stores["federated"]
    copy = Store(tmp_path / "f.duckdb")
    shutil.copy(source.path, copy.path)
    with copy.connect() as con:
        con.execute(
            "INSERT INTO federated_rounds BY NAME SELECT * REPLACE ('retry' AS result_id, "
            "'failed' AS status, finished_at + INTERVAL 1 HOUR AS finished_at) "
            "FROM federated_rounds WHERE round = 3 AND aggregation = 'fedavg'"
        )
    manifest = publish(copy, _protocol(copy, "federated_rounds"), tmp_path / "fed-v2")
    assert manifest["rounds"] == 8 and manifest["status"] == {"ok": 7, "failed": 1}


def _cpu(store: Store, folder: Path) -> tuple[float, dict[str, int]]:
    manifest = publish(store, _protocol(store, "federated_rounds"), folder)
    return manifest["cpu_hours"], manifest["cpu_hours_basis"]


def test_a_federated_rounds_cpu_hours_count_its_parallel_clients(stores, tmp_path):
    """Round k > 0: 3 clients train in parallel (Ray tasks, one thread each) for 800 s of
    the round's 1000 s, then the server aggregates and scores for 200 s: 2,600 CPU
    seconds, where its wall time x the round's one thread said 1,000 (the manifest's
    number before the rounds measured their CPU). A row without the measurement (a
    failed round, a store older than it) counts wall x threads, and the manifest says
    how many rows counted which way."""
    import shutil

    copy = Store(tmp_path / "f.duckdb")
    shutil.copy(stores["federated"][0].path, copy.path)
    with copy.connect() as con:
        con.execute(
            "UPDATE federated_rounds SET cell_wall_s = 1000, hardware_profile_id = NULL, "
            "clients_wall_s = CASE WHEN round > 0 THEN 800 END, "
            "clients_cpu_s = CASE WHEN round > 0 THEN 3 * 800 ELSE 0 END, "
            "server_cpu_s = CASE WHEN round > 0 THEN 200 ELSE 1000 END"
        )
    # 2 runs x (round 0 + 3 training rounds).
    assert _cpu(copy, tmp_path / "a") == (round((2 * 1000 + 6 * 2600) / 3600, 3), {"measured": 8})
    with copy.connect() as con:
        con.execute("UPDATE federated_rounds SET clients_cpu_s = NULL WHERE round = 3 "
                    "AND aggregation = 'fedavg'")  # fmt: skip
    mixed = (round((3 * 1000 + 5 * 2600) / 3600, 3), {"measured": 7, "wall_x_threads": 1})
    assert _cpu(copy, tmp_path / "b") == mixed
    with copy.connect() as con:
        for view in ("federated_results", "federated_curve"):
            con.execute(f"DROP VIEW {view}")
        for column in ("clients_cpu_s", "server_cpu_s"):
            con.execute(f"ALTER TABLE federated_rounds DROP COLUMN {column}")
    assert _cpu(copy, tmp_path / "c") == (round(8 * 1000 / 3600, 3), {"wall_x_threads": 8})


def test_an_altered_track_folder_is_refused(stores, tmp_path):
    source, _ = stores["continual"]
    folder = tmp_path / "cont-v1"
    publish(source, _protocol(source, "continual_runs"), folder)
    with (folder / "continual_scores.parquet").open("ab") as handle:
        handle.write(b"x")
    with pytest.raises(PublishedError, match="continual_scores.parquet differs from the checksum"):
        load_published(Store(tmp_path / "a.duckdb"), folder)


def test_a_protocol_no_track_holds_is_refused_with_the_protocols_there(stores, tmp_path):
    source, _ = stores["continual"]
    held = _protocol(source, "continual_runs")
    with pytest.raises(PublishedError) as caught:
        publish(source, "nope", tmp_path / "nope")
    assert f"no rows of protocol 'nope' in {source.path}; the store holds continual: {held}" in str(
        caught.value
    )
    assert not (tmp_path / "nope").exists()
    with pytest.raises(PublishedError, match="no rows of protocol .* of the federated track"):
        publish(source, held, tmp_path / "x", track="federated")
    with pytest.raises(PublishedError, match="unknown track 'cont'; tracks: training, continual"):
        publish(source, held, tmp_path / "x", track="cont")
    out = CliRunner().invoke(app, ["publish", "nope", "--db", str(source.path)])
    assert out.exit_code == 1 and "the store holds continual:" in " ".join(out.output.split())


def test_a_protocol_in_two_tracks_is_published_from_the_one_named(stores, tmp_path):
    import shutil

    source, _ = stores["continual"]
    both = Store(tmp_path / "both.duckdb")
    shutil.copy(source.path, both.path)
    held = _protocol(both, "continual_runs")
    federated_rows = stores["federated"][0].path
    with both.connect() as con:
        con.execute(f"ATTACH '{federated_rows}' AS f (READ_ONLY)")
        con.execute(
            "INSERT INTO federated_rounds BY NAME SELECT * REPLACE (? AS protocol) "
            "FROM f.federated_rounds",
            [held],
        )
    with pytest.raises(PublishedError, match="rows in several tracks .continual, federated.: "):
        publish(both, held, tmp_path / "x")
    assert publish(both, held, tmp_path / "x", track="federated")["rounds"] == 8
    out = CliRunner().invoke(
        app, ["publish", held, "--db", str(both.path), "--out", str(tmp_path / "y"),
              "--track", "continual"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert f"published 2 continual cells of {held} (2 ok;" in " ".join(out.output.split())


def test_a_store_older_than_the_tracks_origin_gains_it_in_place(stores, tmp_path):
    """Stores written before the track tables had `origin` (and federated_rounds
    `method_version`): upgraded in place, then they load a publication."""
    import shutil

    source, _ = stores["federated"]
    folder = tmp_path / "fed-v1"
    publish(source, _protocol(source, "federated_rounds"), folder)
    old = Store(tmp_path / "old.duckdb")
    shutil.copy(stores["continual"][0].path, old.path)
    with old.connect() as con:
        for view in ("federated_results", "federated_curve", "continual_matrix"):
            con.execute(f"DROP VIEW {view}")
        con.execute("ALTER TABLE federated_rounds DROP COLUMN method_version")
        for table in ("continual_runs", "federated_rounds"):
            con.execute(f"ALTER TABLE {table} DROP COLUMN origin")
    assert old.upgrade_if_older() is True
    have = {
        (r.table_name, r.column_name)
        for r in old.query("SELECT table_name, column_name FROM information_schema.columns")
        .itertuples()
    }  # fmt: skip
    assert {("continual_runs", "origin"), ("federated_rounds", "origin"),
            ("federated_rounds", "method_version")} <= have  # fmt: skip
    assert old.upgrade_if_older() is False
    assert load_published(old, folder).rows == 8
    assert set(old.query("SELECT origin FROM continual_runs").origin.isna()) == {True}


def test_the_pages_mark_published_rows_as_published(stores, tmp_path):
    from leaderboard import continual as continual_page
    from leaderboard import federated as federated_page
    from leaderboard.data import Reader

    mixed = Store(tmp_path / "mixed.duckdb")
    source, _ = stores["federated"]
    publish(source, _protocol(source, "federated_rounds"), tmp_path / "fed-v1")
    load_published(mixed, tmp_path / "fed-v1")
    source, _ = stores["continual"]
    publish(source, _protocol(source, "continual_runs"), tmp_path / "cont-v1")
    load_published(mixed, tmp_path / "cont-v1")
    reader = Reader(mixed.path)
    rows = continual_page.summary_table(
        continual_page.continual_summary(continual_page.continual_rows(reader))
    ).frame
    assert set(rows["Source"]) == {"published: cont-v1"} and list(rows.columns)[1] == "Source"
    fed = federated_page.summary_table(
        federated_page.federated_summary(federated_page.federated_runs(reader))
    ).frame
    assert set(fed["Source"]) == {"published: fed-v1"}
    # The source store's own rows: "your run".
    own = continual_page.continual_summary(continual_page.continual_rows(Reader(source.path)))
    assert set(continual_page.summary_table(own).frame["Source"]) == {"your run"}


def test_a_publication_without_a_track_still_loads_as_training(tmp_path):
    """Folders written before the tracks (league-v1 until 2026-12-06) name no track: they
    load as the training publications they are. The committed league, its manifest's
    `track` taken out, stands for them."""
    import shutil

    old = tmp_path / "league-v1"
    shutil.copytree(LEAGUE, old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest.pop("track", None)
    (old / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    manifest = read_manifest(old)
    assert "track" not in manifest and manifest["format_version"] == 1
    store = Store(tmp_path / "league.duckdb")
    report = load_published(store, old)
    assert (report.track, report.rows) == ("training", manifest["cells"])
    assert report.added["cell_runs"] == manifest["cells"] and report.added["predictions"] > 0
    rows = store.query("SELECT origin, protocol FROM results")
    assert set(rows.origin) == {"league-v1"} and set(rows.protocol) == {manifest["protocol"]}
    published = duckdb.sql(f"SELECT count(*) FROM '{old / 'cell_runs.parquet'}'").fetchall()
    assert published[0][0] == manifest["cells"]


def test_verify_refuses_a_continual_publication_before_running_anything(stores, tmp_path):
    source, _ = stores["continual"]
    folder = tmp_path / "cont-v1"
    publish(source, _protocol(source, "continual_runs"), folder)
    out = CliRunner().invoke(app, ["verify", "--published", "1", "--folder", str(folder)])
    assert out.exit_code == 2, out.output
    said = " ".join(out.output.split())
    assert "publishes the continual track; verify reruns training cells only" in said


def test_an_unfinished_federated_run_ships_its_last_adapter_and_goes_on_from_it(
    tiny_plugins, tmp_path
):
    """Rounds 0 and 1 of 3 stored: the folder carries each run's round-1 adapter (where
    its bytes are the ones stored), a store loading it resumes at round 2."""
    from suite.artifacts import federated_root, sha256_file
    from suite.results import FederatedMeasured

    (tmp_path / "src").mkdir()
    matrix = write_federated_matrix(tmp_path / "src")
    source = Store(tmp_path / "src" / "f.duckdb")
    source.init()
    for cell in plan(Catalog.discover([tiny_plugins]), str(matrix), source).cells:
        if cell.round > 1:
            continue
        path = cell.state_path(cell.round)  # below federated_root(source.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"{cell.fed_run} {cell.round}".encode())
        made = federated._measured(cell)
        m = made.measurements.model_copy(
            update={"state_path": str(path), "state_sha256": sha256_file(path)}
        )
        report = CellReport(measured=FederatedMeasured(status="ok", measurements=m))
        source.write_federated(cell, report, {}, None)
    runs = sorted(source.query("SELECT DISTINCT fed_run FROM federated_rounds").fed_run)
    (federated_root(source.path) / runs[1] / "round-0001.safetensors").write_bytes(b"changed")
    manifest = publish(source, _protocol(source, "federated_rounds"), tmp_path / "fed-v1")
    assert [f for f in manifest["files"] if f.startswith("files/")] == [
        f"files/{runs[0]}/round-0001.safetensors"
    ]
    assert manifest["files_left_out"] == [f"{runs[1]}/round-0001.safetensors"]

    fresh = Store(tmp_path / "dst" / "f.duckdb")
    assert load_published(fresh, tmp_path / "fed-v1").added["files"] == 1
    placed = federated_root(fresh.path) / runs[0] / "round-0001.safetensors"
    assert placed.read_bytes() == f"{runs[0]} 1".encode()
    # The run with its adapter goes on at round 2; the one without starts again at 0.
    said = _dry_run(matrix, fresh.path, tiny_plugins)
    assert "8 cells" in said and "2 already stored ok, 6 to run" in said, said
    assert load_published(fresh, tmp_path / "fed-v1").added["files"] == 0
