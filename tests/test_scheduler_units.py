"""Small, Ray-free checks of the scheduler's pieces: resources, mismatch, disk cache, locks."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from suite.scheduler import hardware, resources
from suite.specs.profile import HardwareProfile
from tests.helpers import catalog


def _profile(name: str) -> HardwareProfile:
    return catalog().profiles.get(name).spec


def test_every_required_profile_is_shipped():
    shipped = set(catalog().profiles.names())
    wanted = {"cpu-local", "a100-80gb", "h100-80gb", "h200-141gb", "l40s-48gb", "rtx4090-24gb"}
    assert wanted <= shipped, wanted - shipped
    assert _profile("h200-141gb").expected.type == "cuda"
    assert _profile("cpu-local").expected.type == "cpu"


def test_ray_options_and_feasibility():
    h100 = _profile("h100-80gb")
    opts = resources.ray_options(h100)
    assert opts["num_gpus"] == 1 and opts["accelerator_type"] == "H100"
    assert opts["memory"] == int(32e9)
    laptop = resources.NodeInfo("a", "10.0.0.1", {"CPU": 8.0, "memory": 16e9})
    gpu_node = resources.NodeInfo(
        "b", "10.0.0.2", {"CPU": 32.0, "GPU": 4.0, "memory": 500e9, "accelerator_type:H100": 1}
    )
    with pytest.raises(resources.SchedulingError, match="h100-80gb"):
        resources.check_feasible([h100], [laptop])
    resources.check_feasible([h100], [laptop, gpu_node])
    assert resources.slots(h100, [laptop, gpu_node]) == 4
    quarter = _profile("h100-80gb-quarter")
    assert resources.slots(quarter, [gpu_node]) == 16
    assert resources.slots(_profile("cpu-local"), [laptop]) == 8


def test_fractional_gpu_needs_opt_in():
    with pytest.raises(ValueError, match="allow_fractional_gpu"):
        HardwareProfile(name="x", resources={"num_gpus": 0.5})


def test_mismatch_between_declared_and_actual_device():
    actual_cpu = {"device_type": "cpu", "device_name": "cpu", "device_memory_bytes": None}
    assert _profile("cpu-local").mismatch(actual_cpu) is None
    assert "declared cuda" in _profile("h100-80gb").mismatch(actual_cpu)
    a100 = {"device_type": "cuda", "device_name": "NVIDIA A100-SXM4-80GB"}
    assert "H100" in _profile("h100-80gb").mismatch({**a100, "device_memory_bytes": 85e9})
    assert _profile("a100-80gb").mismatch({**a100, "device_memory_bytes": 85e9}) is None


def test_calibration_records_positive_peaks():
    import torch

    prof = hardware.record(torch.device("cpu"), "float32")
    assert prof["matmul_flops"] > 1e8 and prof["memory_bandwidth_bytes_s"] > 1e8
    assert prof["cpu_cores"] >= 1 and prof["versions"]["torch"]
    assert len(prof["profile_id"]) == 16


def test_tokenised_datasets_are_cached_on_disk(tmp_path: Path):
    from suite.train import caches

    task = catalog().tasks.get("drug-condition")
    preset = catalog().models.get("minilm-l6").spec
    caches.set_disk_dir(tmp_path)
    try:
        before = dict(caches.COUNTS)
        caches.clear()
        first = caches.encoded(task.spec, str(task.folder), preset)
        caches.clear()  # a new worker process: memory empty, disk warm
        second = caches.encoded(task.spec, str(task.folder), preset)
    finally:
        caches.set_disk_dir(None)
        caches.clear()
    assert caches.COUNTS["tokenizations"] - before["tokenizations"] == 1
    assert caches.COUNTS["tokenized_loads"] - before["tokenized_loads"] == 1
    assert first["test"].input_ids == second["test"].input_ids
    assert len(list(tmp_path.glob("tokenized-*.pkl"))) == 1


HOLD_LOCK = """
import sys
from suite.store.store import RunLock
with RunLock(sys.argv[1]):
    print("ready", flush=True)
    sys.stdin.read()
"""


@contextmanager
def run_lock_held_elsewhere(db: Path) -> Iterator[subprocess.Popen]:
    """Another process holding `db`'s run lock (as a running `peftbench run` does)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(db)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "ready"
        yield holder
    finally:
        holder.communicate("", timeout=60)


def test_second_run_on_the_same_database_stops_with_a_message(tmp_path: Path):
    from suite.driver import Plan, run_plan
    from suite.store.store import RunLock, Store, StoreBusy

    store = Store(tmp_path / "r.duckdb")
    with run_lock_held_elsewhere(store.path) as holder:
        with pytest.raises(StoreBusy, match="another `peftbench run`") as busy:
            run_plan(Plan("m", [], []), store, lambda cells, on_result: None)
    assert f"pid {holder.pid} on {socket.gethostname()}" in str(busy.value)
    with RunLock(store.path):  # released when its holder ends: free again
        pass


def test_the_run_lock_is_reentrant_in_one_process(tmp_path: Path):
    """The CLI holds the lock while it plans and run_plan takes it again; only the
    outermost release frees it."""
    from suite.store.store import RunLock

    db = tmp_path / "r.duckdb"
    with RunLock(db):
        with RunLock(db):
            pass
        assert RunLock._held  # still held by the outer block
    assert not RunLock._held


def test_a_second_cli_run_says_at_once_who_holds_the_store(tmp_path: Path):
    """Before planning, Ray or a progress bar: the holder's pid and host, exit 3."""
    from typer.testing import CliRunner

    from suite.cli import app

    db = tmp_path / "r.duckdb"
    with run_lock_held_elsewhere(db) as holder:
        out = CliRunner().invoke(app, ["run", "smoke", "--db", str(db)])
    assert out.exit_code == 3, out.output
    assert "store busy:" in out.output and "another `peftbench run`" in out.output
    assert f"pid {holder.pid} on {socket.gethostname()}" in out.output
    assert "matrix smoke" not in out.output  # nothing planned


def test_in_process_timeout_interrupts_the_cell():
    import time

    from suite.scheduler.faults import CellTimeout, alarm

    start = time.monotonic()
    with pytest.raises(CellTimeout), alarm(0.2):
        time.sleep(10)
    assert time.monotonic() - start < 5
    with alarm(None):  # no timeout: a no-op
        pass


def test_the_recorded_cpu_profile_names_the_cpu_model():
    import torch

    from suite.provenance import cpu_model
    from suite.scheduler.hardware import device_facts

    facts = device_facts(torch.device("cpu"))
    assert facts["device_name"] == cpu_model() and facts["device_name"] != "cpu"


def test_embedded_ray_workers_run_at_the_drivers_priority(tmp_path: Path):
    """Ray's default lowers workers by nice 15; the benchmark's cells then starve beside
    anything else on the machine. The embedded Ray keeps them at the driver's priority."""
    import os

    import ray

    from suite.scheduler.cluster import connect, disconnect

    owned = connect(None, tmp_path, num_cpus=1)
    try:

        @ray.remote
        def niceness() -> int:
            return os.nice(0)

        assert ray.get(niceness.remote()) == os.nice(0)
    finally:
        disconnect(owned)


def test_embedded_ray_that_fails_to_start_says_why_and_what_to_do(tmp_path: Path, monkeypatch):
    """Under heavy load Ray's own processes can miss its start-up deadline; the user sees
    one sentence with the cause and the two ways on, not Ray's traceback."""
    import ray

    from suite.scheduler import cluster

    def late_start(**_):
        raise Exception("The current node timed out during startup.\nstack ...")  # noqa: TRY002 - as Ray raises it

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", late_start)
    with pytest.raises(resources.SchedulingError) as failed:
        cluster.connect(None, tmp_path / "results")
    said = str(failed.value)
    assert "did not start (The current node timed out during startup.)" in said
    assert "--executor local" in said and "verify --local" in said and "stack" not in said


def test_two_recordings_differing_only_in_calibration_are_the_same_machine(tmp_path, monkeypatch):
    """verify's "same hw": two workers of one machine calibrate to other FLOP/s, so their
    profile ids differ (stored rows link to the ids, which stay as they are), and the
    machine identity read back from the store says they are the same machine."""
    import torch

    from suite.store.store import Store, _insert_profile
    from suite.verify import machine, same_machine

    recorded = []
    for flops, bandwidth in ((2.2e11, 9e9), (2.3e11, 8e9)):
        monkeypatch.setattr(hardware, "matmul_flops", lambda device, dtype, f=flops: f)
        monkeypatch.setattr(hardware, "memory_bandwidth", lambda device, b=bandwidth: b)
        recorded.append(hardware.record(torch.device("cpu"), "bfloat16"))
    first, second = recorded
    assert first["profile_id"] != second["profile_id"]
    store = Store(tmp_path / "r.duckdb")
    store.init()
    with store.connect() as con:
        for profile in recorded:
            _insert_profile(con, profile)
    here, there = machine(store, first["profile_id"]), machine(store, second["profile_id"])
    assert here and "matmul_flops" not in here and "memory_bandwidth_bytes_s" not in here
    assert same_machine(here, there) is True
    assert same_machine(here, {**there, "torch_threads": here["torch_threads"] + 1}) is False


def test_a_profile_says_its_torch_threads_once():
    assert HardwareProfile(name="x", resources={"num_cpus": 3}).threads() == 3
    assert HardwareProfile(name="x", resources={"num_cpus": 0.5}).threads() == 1
    assert HardwareProfile(name="x", resources={"num_cpus": 4}, torch_threads=2).threads() == 2
    assert _profile("cpu-local").threads() == 1


def test_the_local_executor_runs_a_cell_at_its_profiles_threads(
    tiny_plugins: Path, tmp_path: Path, monkeypatch
):
    """`--executor local` ran cells at torch's default (every core) where Ray's workers ran
    them at the profile's threads: one cell, two thread counts, two recorded machines."""
    import torch

    from suite.driver import in_process_executor, plan
    from suite.registry import Catalog
    from suite.results import Measured
    from suite.scheduler import worker
    from suite.store.store import Store
    from tests.scheduler_helpers import write_matrix

    store = Store(tmp_path / "r.duckdb")
    cell = plan(Catalog.discover([tiny_plugins]), str(write_matrix(tmp_path, "t", ["head"])), store)
    cell = cell.todo[0]
    seen: list[int] = []

    class Kind:  # the cell's own work: what it sees, nothing trained
        def run(self, cell, step):
            seen.append(torch.get_num_threads())
            return Measured(status="failed", error="nothing trained")

    monkeypatch.setattr(worker, "cell_kind", lambda cell: Kind())
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        reports = []
        in_process_executor()([cell], lambda c, report: reports.append(report))
        assert torch.get_num_threads() == 2  # the process's own count comes back
    finally:
        torch.set_num_threads(before)
    assert seen == [cell.profile.threads()] == [1]
    assert reports[0].placement.hardware_profile["torch_threads"] == 1


def test_a_cell_writes_its_log_as_it_runs(tiny_plugins: Path, tmp_path: Path, monkeypatch):
    """A long cell (a continual or LLM cell runs for half an hour) could not be followed:
    its log appeared when it ended. The worker now appends each line as it comes, and the
    driver leaves that file as it is (each line once); without the run's log folder on the
    worker's machine, the driver writes the whole log at the end, as before."""
    from suite.driver import in_process_executor, plan, write_cell_log
    from suite.registry import Catalog
    from suite.results import Measured
    from suite.scheduler import worker
    from suite.store.store import Store
    from tests.scheduler_helpers import write_matrix

    store = Store(tmp_path / "r.duckdb")
    cell = plan(Catalog.discover([tiny_plugins]), str(write_matrix(tmp_path, "t", ["head"])), store)
    cell = cell.todo[0]
    logs = tmp_path / "logs"
    logs.mkdir()
    path = logs / f"{cell.cell_id}.log"
    during: list[str] = []

    class Kind:  # two steps; reads the log between them, as `tail -f` would
        def run(self, cell, step):
            step(1, 2, 0.5)
            during.append(path.read_text())
            step(2, 2, 0.25)
            return Measured(status="failed", error="nothing trained")

    monkeypatch.setattr(worker, "cell_kind", lambda cell: Kind())
    executor = in_process_executor()
    executor.log_dir = logs
    reports = []
    executor([cell], lambda c, report: reports.append(report))
    assert "step 1/2 loss 0.500000" in during[0] and "step 2/2" not in during[0]
    assert reports[0].live_log == str(path)
    assert write_cell_log(logs, cell, reports[0]) == path
    text = path.read_text()
    assert text == reports[0].log and text.count("step 1/2") == 1
    assert "status failed" in text and "nothing trained" in text

    elsewhere = in_process_executor()  # no log folder here: the report carries the log
    elsewhere.log_dir = tmp_path / "not-on-this-node"
    reports.clear()
    elsewhere([cell], lambda c, report: reports.append(report))
    assert reports[0].live_log is None and not elsewhere.log_dir.exists()
    assert "step 2/2 loss 0.250000" in reports[0].log


def test_the_cli_s_executor_writes_live_logs(tiny_plugins: Path, tmp_path: Path, monkeypatch):
    """`peftbench run` wraps its executor (cli_run.StopsOnSignals); the driver set the log
    folder on the wrapper, never on the executor that ran the cells, so no live log was
    written through the CLI (an LLM cell's log stayed empty for its whole run)."""
    from suite.cli_run import StopsOnSignals
    from suite.driver import in_process_executor, plan, run_plan
    from suite.registry import Catalog
    from suite.results import Measured
    from suite.scheduler import worker
    from suite.store.store import Store
    from tests.scheduler_helpers import write_matrix

    store = Store(tmp_path / "r.duckdb")
    the_plan = plan(
        Catalog.discover([tiny_plugins]), str(write_matrix(tmp_path, "t", ["head"])), store
    )
    seen: list[list[str]] = []

    class Kind:  # records which log files exist while the cell runs
        def run(self, cell, step):
            step(1, 1, 0.5)
            seen.append([p.name for p in (tmp_path / "logs").rglob("*.log")])
            return Measured(status="failed", error="nothing trained")

    monkeypatch.setattr(worker, "cell_kind", lambda cell: Kind())
    run_plan(the_plan, store, StopsOnSignals(in_process_executor()))
    assert seen == [[f"{the_plan.todo[0].cell_id}.log"]]
