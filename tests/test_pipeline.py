"""A trained cell is a pipeline of phases (suite/train/runner.py): load -> prepare ->
train -> evaluate -> measure -> save, each a function of its own module, called once and
in order, its time on the clock the row stores; the device is the profile's choice."""

from __future__ import annotations

import pytest
import torch

from suite.results import RUNNER_PHASES
from suite.specs.profile import HardwareProfile
from suite.train import runner
from tests import test_costs

lora_cell = test_costs.lora_cell  # the tiny LoRA cell (a fixture)
PIPELINE = ("load", "prepare", "train_cell", "evaluate_cell", "measure", "save")


def test_each_phase_is_a_function_of_its_own_module():
    modules = [getattr(runner, name).__module__ for name in PIPELINE]
    assert len(set(modules)) == len(PIPELINE), modules
    assert runner.__name__ not in modules


def test_the_runner_calls_each_phase_once_in_order_and_times_it(lora_cell, monkeypatch):
    called: list[str] = []

    def recording(name, phase):
        def run(*args, **kwargs):
            called.append(name)
            return phase(*args, **kwargs)

        return run

    for name in PIPELINE:
        monkeypatch.setattr(runner, name, recording(name, getattr(runner, name)))
    measured = runner.run_cell(lora_cell)
    assert measured.status == "ok", measured.error
    assert called == list(PIPELINE)
    # Every phase the row stores is on the clock, and they add up to the wall time.
    assert set(measured.phases) == set(RUNNER_PHASES)
    assert sum(measured.phases.values()) == pytest.approx(measured.cell_wall_s, rel=1e-9)


def test_the_profile_picks_the_device(monkeypatch):
    cuda = HardwareProfile(name="gpu", expected={"type": "cuda"})
    assert HardwareProfile(name="cpu").device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cuda.device() == torch.device("cpu")  # the worker records the mismatch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert cuda.device() == torch.device("cuda")
    assert HardwareProfile(name="cpu").device() == torch.device("cpu")


def test_the_task_types_functions_are_resolved_once_in_load(lora_cell, monkeypatch):
    """load resolves the collator, the loss and the predictor; the later phases take them
    from the setup instead of looking the task's type up again (bench/cell_trace.py)."""
    from suite.tasks.types import TaskType

    asked: list[str] = []
    function = TaskType.function

    def counting(self, role):
        asked.append(role)
        return function(self, role)

    monkeypatch.setattr(TaskType, "function", counting)
    measured = runner.run_cell(lora_cell)
    assert measured.status == "ok", measured.error
    # (A first cell of the worker also asks for the encoder, tokenising its data.)
    assert [asked.count(r) for r in ("collator", "loss", "predictor")] == [1, 1, 1], asked


def test_load_hashes_the_task_and_model_once_for_the_caches(lora_cell, monkeypatch):
    """The caches find a cell's data, tokenizer, splits and backbone by the keys load
    computed (bench/cell_trace.py: no hop back to suite/cells for each lookup)."""
    from suite.train import caches, load

    def unexpected(spec):
        raise AssertionError(f"caches hashed {type(spec).__name__} again")

    monkeypatch.setattr(caches, "spec_hash", unexpected)
    setup = load.load(lora_cell)
    assert setup.task_key == load.spec_hash(lora_cell.task)
    assert caches.baselines(lora_cell.task, lora_cell.task_dir, setup.task_key) is not None
