"""Published results: a protocol's rows written as Parquet + manifest, and read back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from suite.store.published import PublishedError, load_published, publish, read_manifest
from suite.store.store import Store
from tests.support.demo import demo_db_copy


def _protocol(store: Store) -> str:
    """The demo matrix's protocol (named after the matrix unless it names one)."""
    return store.query(
        "SELECT DISTINCT protocol FROM results WHERE matrix = 'demo'"
    ).protocol.item()


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    root = tmp_path_factory.mktemp("published")
    store = Store(demo_db_copy(root / "demo.duckdb"))
    protocol = _protocol(store)
    manifest = publish(store, protocol, root / "demo-v1", note="test")
    return store, protocol, root / "demo-v1", manifest


def test_publish_writes_the_protocols_latest_rows_and_a_checked_manifest(published):
    store, protocol, folder, manifest = published
    want = store.query(
        "SELECT count(*) AS n FROM results WHERE protocol = $p", {"p": protocol}
    ).n.item()
    assert manifest["cells"] == want > 0
    assert manifest["protocol"] == protocol and manifest["name"] == "demo-v1"
    # Failed cells are published too: a failure is part of the result.
    assert manifest["status"]["failed"] >= 1 and manifest["status"]["ok"] >= 1
    assert set(manifest["files"]) == {
        "cell_runs.parquet", "metrics.parquet", "predictions.parquet",
        "baselines.parquet", "hardware_profiles.parquet",
    }  # fmt: skip
    assert manifest["methods"]["lora"]["fidelity"] == "reference"
    assert manifest["cpu_hours"] >= manifest["cell_wall_hours"] >= 0
    # The demo's rows predate measured CPU: each counts its wall time x its threads.
    assert manifest["cpu_hours_basis"] == {"wall_x_threads": manifest["cells"]}
    assert manifest["commits"] == ["demo"]
    assert read_manifest(folder) == json.loads((folder / "manifest.json").read_text())
    # The other protocol's rows (the demo's second profile ran as matrix demo-gpu) stay out.
    import duckdb

    runs = duckdb.sql(f"SELECT * FROM '{folder / 'cell_runs.parquet'}'").df()
    assert set(runs.protocol) == {protocol} and runs.cell_id.is_unique


def test_a_training_row_that_measured_its_cpu_counts_that(tmp_path):
    """Wall x threads counts the time a cell waited for a core on a shared machine: a row
    that measured its process's CPU (`cell_cpu_s`) counts that instead."""
    store = Store(demo_db_copy(tmp_path / "demo.duckdb"))
    protocol = _protocol(store)
    before = publish(store, protocol, tmp_path / "before", note="test")
    row = store.query(
        "SELECT r.result_id, coalesce(r.cell_wall_s, 0) * coalesce(nullif(h.torch_threads, 0), 1) AS wxt "
        "FROM latest_results r LEFT JOIN hardware_profiles h ON h.profile_id = r.hardware_profile_id "
        "WHERE r.protocol = $p ORDER BY r.cell_id LIMIT 1",
        {"p": protocol},
    ).iloc[0]
    with store.connect() as con:
        con.execute("UPDATE cell_runs SET cell_cpu_s = 1800 WHERE result_id = ?", [row.result_id])
    after = publish(store, protocol, tmp_path / "after", note="test")
    assert after["cpu_hours_basis"] == {"measured": 1, "wall_x_threads": after["cells"] - 1}
    assert after["cpu_hours"] - before["cpu_hours"] == pytest.approx(
        (1800 - row.wxt) / 3600, abs=2e-3
    )


def test_rows_of_a_method_whose_version_moved_on_are_left_out_and_said(published, tmp_path):
    """A row of an older method version is stale the moment it is published (today's code
    no longer expands to its cell): publish leaves it out and the manifest says so."""
    store, protocol, _, everything = published
    n_lora = store.query(
        "SELECT count(*) AS n FROM latest_results WHERE protocol = $p AND method_name = 'lora'",
        {"p": protocol},
    ).n.item()
    assert n_lora > 0
    manifest = publish(store, protocol, tmp_path / "v", note="test", versions={"lora": 99})
    assert manifest["cells"] == everything["cells"] - n_lora
    assert set(manifest["left_out_outdated"]) == {"lora"}
    left = manifest["left_out_outdated"]["lora"]
    assert left["rows"] == n_lora and left["current"] == 99 and left["version"] < 99
    assert "lora" not in manifest["methods"]
    # Today's versions (or none given) leave everything in.
    same = publish(store, protocol, tmp_path / "w", note="test", versions={"lora": 1})
    assert same["cells"] == everything["cells"] and "left_out_outdated" not in same


def test_loading_a_published_folder_marks_its_rows_and_makes_the_cells_count_as_stored(
    published, tmp_path
):
    source, protocol, folder, manifest = published
    store = Store(tmp_path / "fresh.duckdb")
    report = load_published(store, folder)
    assert report.added["cell_runs"] == manifest["cells"]
    assert report.added["predictions"] > 0 and report.added["metrics"] > 0
    rows = store.query("SELECT cell_id, origin, status, test_primary FROM results ORDER BY cell_id")
    assert set(rows.origin) == {"demo-v1"}
    want = source.query(
        "SELECT cell_id, status, test_primary FROM results WHERE protocol = $p ORDER BY cell_id",
        {"p": protocol},
    )
    assert (
        rows[["cell_id", "status"]].values.tolist() == want[["cell_id", "status"]].values.tolist()
    )
    ok = set(want.cell_id[want.status == "ok"])
    # A run of the same protocol resumes after the published cells.
    assert store.ok_cell_ids(want.cell_id) == ok
    # Loading twice adds nothing.
    again = load_published(store, folder)
    assert set(again.added.values()) == {0}


def test_the_report_loads_every_published_folder_once_and_marks_its_rows(
    published, tmp_path, monkeypatch
):
    """`peftbench report` (and `leaderboard`) load the checkout's published datasets into
    the store first; a second call adds nothing; --no-published leaves them out."""
    from typer.testing import CliRunner

    import suite.cli_published as cli_published
    from suite.cli import app
    from suite.store.published import load_all_published, published_folders

    _, _, folder, manifest = published
    root = folder.parent
    assert published_folders(root) == [folder]
    store = Store(tmp_path / "mine.duckdb")
    first, again = load_all_published(store, root), load_all_published(store, root)
    assert first[0].added["cell_runs"] == manifest["cells"] and not any(again[0].added.values())
    monkeypatch.setattr(cli_published, "PUBLISHED", root)
    db, html = tmp_path / "r.duckdb", tmp_path / "r.html"
    out = CliRunner().invoke(app, ["report", "--html", str(html), "--db", str(db)])
    assert out.exit_code == 0, out.output
    assert f"loaded published demo-v1: {manifest['cells']} rows" in out.output
    assert set(Store(db).query("SELECT origin FROM results").origin) == {"demo-v1"}
    none = CliRunner().invoke(
        app, ["report", "--html", str(html), "--db", str(tmp_path / "n.duckdb"), "--no-published"]
    )
    assert none.exit_code == 1 and "no results database" in none.output


def test_an_altered_or_incomplete_folder_is_refused(published, tmp_path):
    import shutil

    _, _, folder, _ = published
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    with (copy / "metrics.parquet").open("ab") as handle:
        handle.write(b"x")
    with pytest.raises(PublishedError, match="differs from the checksum"):
        load_published(Store(tmp_path / "a.duckdb"), copy)
    (copy / "metrics.parquet").unlink()
    with pytest.raises(PublishedError, match="missing"):
        read_manifest(copy)
    with pytest.raises(PublishedError, match="no manifest.json"):
        read_manifest(tmp_path)


def test_publishing_an_unknown_protocol_says_so(published, tmp_path):
    store, _, _, _ = published
    with pytest.raises(PublishedError, match="no rows of protocol 'nope'"):
        publish(store, "nope", tmp_path / "nope")


@pytest.mark.slow
def test_verify_reruns_published_cells_and_finds_them_exact(tiny_plugins, tmp_path, monkeypatch):
    """A tuned tiny matrix run, published, then 3 of its cells rerun by `verify`: the
    trials and the finals (selected again from the published trials) reproduce exactly."""
    import textwrap

    from suite.driver import in_process_executor, plan, run_plan
    from suite.registry import Catalog
    from suite.verify import verify

    extra = tmp_path / "extra"
    (extra / "matrices").mkdir(parents=True)
    (extra / "matrices" / "pubtiny.yaml").write_text(
        textwrap.dedent("""\
        name: pubtiny
        protocol: pubtiny-v1
        models: [tiny-bert]
        methods: [head, lora]
        tasks: [drug-condition]
        seeds: [0, 1]
        budget: {max_steps: 2, batch_size: 8}
        tuning: {trials: 2, sampler: random, seed: 0}
        """)
    )
    catalog = Catalog.discover([tiny_plugins, extra])
    store = Store(tmp_path / "results" / "r.duckdb")
    executor = in_process_executor(results_dir=store.path.parent)
    assert run_plan(plan(catalog, "pubtiny", store), store, executor).all_ok
    manifest = publish(store, "pubtiny-v1", tmp_path / "pub")
    assert manifest["phases"] == {"trial": 4, "final": 4}
    # A fresh worker calibrates again (issue 23: its other FLOP/s gave another profile id,
    # and "same hw" said "no" on the machine that published the rows).
    from suite.scheduler import hardware

    monkeypatch.setattr(hardware, "matmul_flops", lambda device, dtype: 1.0)
    executor = in_process_executor(results_dir=store.path.parent)
    moved = verify(catalog, tmp_path / "pub", 3, 0, tmp_path / "scratch", executor)
    ids = Store(tmp_path / "scratch" / "rerun.duckdb").query(
        "SELECT profile_id FROM hardware_profiles"
    )
    assert not set(ids["profile_id"]) & set(
        store.query("SELECT profile_id FROM hardware_profiles")["profile_id"]
    )
    assert len(moved) == 3
    assert {m.status for m in moved} == {"exact"}, moved
    assert all(m.same_machine and m.changed_predictions == 0 for m in moved)
    # The seeded choice takes a trial (scored on validation) and a final (on test).
    assert {(m.phase, m.split) for m in moved} == {("trial", "validation"), ("final", "test")}


def test_the_same_machine_is_its_stable_facts_not_its_calibration():
    from suite.verify import same_machine

    here = {"cpu_model": "AMD EPYC", "cpu_cores": 2, "ram_bytes": 25276194816, "device_name": None}
    assert same_machine(here, dict(here)) is True
    assert same_machine(here, {**here, "cpu_cores": 16}) is False
    assert same_machine(here, {k: v for k, v in here.items() if k != "ram_bytes"}) is True
    assert same_machine(here, None) is None


def test_the_cli_refuses_a_folder_that_is_not_published_before_running_anything(tmp_path):
    from tests.test_cli_e2e import cli

    out = cli("verify", "--published", "2", "--folder", str(tmp_path))
    assert out.returncode == 2
    assert f"{tmp_path} has no manifest.json: not a published dataset" in out.stderr
    assert "ray" not in out.stderr.lower()
    out = cli("import-published", str(tmp_path), "--db", str(tmp_path / "x.duckdb"))
    assert out.returncode == 2 and "has no manifest.json" in out.stderr
    assert not (tmp_path / "x.duckdb").exists()
    out = cli("publish", "league-v1", "--db", str(tmp_path / "none.duckdb"))
    assert out.returncode == 1 and "no results database" in out.stderr


def test_every_committed_published_folder_is_intact():
    """The datasets shipped in the repository (the league, the continual track, the
    learning curves): every file present and matching its manifest's checksum, the
    manifest's counts (cells, or a federated publication's rounds) true."""
    import duckdb

    from suite.paths import CHECKOUT
    from suite.store.published import DEFAULT_TRACK, TRACKS

    folders = [
        p.parent
        for root in (CHECKOUT / "leaderboard" / "published", CHECKOUT / "bench" / "curves")
        for p in root.glob("**/manifest.json")
    ]
    assert folders, "bench/curves ships the learning-curve points"
    for folder in folders:
        manifest = read_manifest(folder)
        track = TRACKS[manifest.get("track", DEFAULT_TRACK)]
        rows = folder / f"{track.runs}.parquet"
        runs = duckdb.sql(f"SELECT status FROM read_parquet('{rows}')")
        assert len(runs.fetchall()) == manifest[track.unit], folder


def test_verify_whose_ray_does_not_start_exits_1_with_one_sentence(monkeypatch):
    """On a saturated machine the embedded Ray can miss its start-up deadline: verify
    says so and how to go on (--local), with no traceback."""
    import ray
    from typer.testing import CliRunner

    from suite.cli import app

    def late_start(**_):
        raise Exception("The current node timed out during startup.")  # noqa: TRY002 - as Ray raises it

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", late_start)
    league = Path(__file__).resolve().parents[1] / "leaderboard" / "published" / "league-v1"
    out = CliRunner().invoke(app, ["verify", "--published", "1", "--folder", str(league)])
    assert out.exit_code == 1, out.output
    said = " ".join(out.output.split())
    assert "the embedded Ray did not start (The current node timed out" in said
    assert "verify --local" in said and "Traceback" not in said
