"""Run one continual cell in this process: load every task, score the untrained models
(the baseline vector), then train through the sequence under the cell's strategy,
scoring every task after every stage (the accuracy matrix, suite/continual/metrics.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from suite.continual.cells import ContinualCell
from suite.continual.metrics import transfer
from suite.continual.stages import Stages, StepCallback
from suite.continual.strategies import STRATEGIES
from suite.track_results import ContinualMeasured, ContinualMeasurements
from suite.train.failure import failure
from suite.train.load import load


def run_continual(cell: ContinualCell, on_step: StepCallback | None = None) -> ContinualMeasured:
    """Run a continual cell; any exception becomes its outcome (status and error text)."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = datetime.now(UTC)
    try:
        outcome = {"status": "ok", "measurements": _run(cell, on_step)}
    except Exception as exc:  # noqa: BLE001 - a failing cell must never stop the matrix
        outcome = failure(exc)
    wall = (datetime.now(UTC) - t0).total_seconds()
    return ContinualMeasured(**outcome, started_at=started, cell_wall_s=wall)


def _run(cell: ContinualCell, on_step: StepCallback | None) -> ContinualMeasurements:
    from suite.methods.source import source_hash
    from suite.train.prepare import method_class

    stages = Stages(cell, [load(cell.stage(i)) for i in range(len(cell.tasks))], on_step)
    n = len(cell.tasks)
    first = [stages.score(j, stages.setups[j].model) for j in range(n)]
    baseline, examples = [s for s, _ in first], [k for _, k in first]
    strategy = STRATEGIES[cell.strategy](stages)
    scores, trained = [], []
    for i in range(n):
        trained.append(strategy.train(i))
        scores.append([stages.score(j, strategy.model_for(j))[0] for j in range(n)])
    summary = transfer(scores, baseline)
    return ContinualMeasurements(
        sequence=cell.sequence,
        metrics=[t.primary_metric for t in cell.tasks],
        scores=scores,
        baseline=baseline,
        avg_accuracy=summary.acc,
        bwt=summary.bwt,
        fwt=summary.fwt,
        eval_examples=examples,
        task_baselines=[stages.trivial(j) for j in range(n)],
        stage_steps=[t["train_steps"] for t in trained],
        final_train_losses=[t["final_train_loss"] for t in trained],
        train_wall_s=sum(t["train_wall_s"] for t in trained),
        trainable_params=strategy.trainable_params(trained),
        peak_memory_bytes=max(t["peak_memory_bytes"] or 0 for t in trained) or None,
        method_source_hash=source_hash(method_class(cell.stage(0))),
        device=str(stages.setups[0].device),
    )
