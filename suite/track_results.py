"""What the runners of the other tracks return: post-hoc stages (merge, compress),
continual sequences and federated rounds. The store derives each one's table from these
types (suite/store/posthoc.py, continual.py, federated.py), as it does cell_runs from
suite/results.py.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

from suite.outcome import Outcome
from suite.result_columns import Elsewhere


class PosthocScore(BaseModel):
    """One metric of a post-hoc result on one task and split, beside the same metric of
    its source (the task's own adapter for a merge, the dense model for a compression)."""

    task: str
    split: str
    metric: str
    value: float | None = None
    source_value: float | None = None
    higher_is_better: bool = True
    primary: bool = False

    @property
    def normalised(self) -> float | None:
        if self.value is None or not self.source_value:
            return None
        return self.value / self.source_value


class PosthocMeasurements(BaseModel):
    """What a post-hoc cell measured (suite/posthoc/run.py)."""

    scores: Annotated[list[PosthocScore], Elsewhere("posthoc_scores")] = Field(default_factory=list)
    # Seconds the merge or the compression itself took (not loading, not evaluation).
    stage_time_s: float | None = None
    # What must be kept: the merged update (RMM: its basis and coefficients), or the
    # compressed model's weights in their compact form; task heads counted apart.
    stored_bytes: int | None = None
    stored_params: int | None = None
    heads_bytes: int | None = None
    # Compression: share of the targeted weights that are zero, whether an N:M pattern
    # holds in every group, nonzeros over the targets, the targets' size.
    sparsity: float | None = None
    # The nominal level the method was asked for (the x axis of the quality-against-
    # sparsity curve: 0.5 for 50% or 2:4) and its label ("50%", "2:4").
    level: float | None = None
    level_label: str | None = None
    pattern_ok: bool | None = None
    nonzero_params: int | None = None
    target_params: int | None = None
    total_params: int | None = None
    # Median latency per test batch of the result and of its source (dense kernels).
    latency_s: float | None = None
    source_latency_s: float | None = None
    # Stages that train (Sparse Model Soups): steps and seconds over every retraining.
    train_steps: int | None = None
    train_wall_s: float | None = None
    device: str | None = None
    method_source_hash: str | None = None
    # The sha256 of every input artifact, as verified before use.
    input_sha256: list[str] = Field(default_factory=list)
    notes: str | None = None


class PosthocMeasured(Outcome):
    """What the post-hoc runner returns for one cell."""

    measurements: PosthocMeasurements = Field(default_factory=PosthocMeasurements)


class ContinualMeasurements(BaseModel):
    """A continual cell's accuracy matrix (suite/continual/) and what follows from it.

    `scores[i][j]`: task j's primary test metric after training through task i (unseen
    tasks included); `baseline[j]`: task j before any training. Both go to the
    continual_scores table (stage 0 is the baseline, stage i + 1 the i-th task's)."""

    sequence: list[str] = Field(default_factory=list)
    metrics: list[str] = Field(default_factory=list)
    scores: Annotated[list[list[float]], Elsewhere("continual_scores")] = Field(
        default_factory=list
    )
    baseline: Annotated[list[float], Elsewhere("continual_scores")] = Field(default_factory=list)
    avg_accuracy: float | None = None
    bwt: float | None = None
    fwt: float | None = None
    eval_examples: list[int] = Field(default_factory=list)
    # Each task's trivial predictor (majority class, or train mean) on the examples it is
    # scored on: what the matrix's scores are read against (None: a task without one).
    task_baselines: list[float | None] = Field(default_factory=list)
    stage_steps: list[int] = Field(default_factory=list)
    final_train_losses: list[float] = Field(default_factory=list)
    train_wall_s: float | None = None
    # The adapter and heads a model carries at the end (every task's, for one adapter per task).
    trainable_params: int | None = None
    peak_memory_bytes: int | None = None
    method_source_hash: str | None = None
    device: str | None = None


class ContinualMeasured(Outcome):
    """What the continual runner returns for one cell."""

    measurements: ContinualMeasurements = Field(default_factory=ContinualMeasurements)


class FederatedMeasurements(BaseModel):
    """One round of a federated run (suite/federated/): the global adapter after it, on
    the validation and test splits, and what the round cost in traffic and time.
    Round 0 is the initial adapter (no traffic); it also records the client split."""

    fed_run: str | None = None
    round: int | None = None
    metric: str | None = None
    validation_score: float | None = None
    test_score: float | None = None
    validation_metrics: dict[str, Any] | None = None
    test_metrics: dict[str, Any] | None = None
    # The task's trivial predictor (majority class, or train mean) on test, in `metric`:
    # what test_score is read against.
    baseline_test_score: float | None = None
    # Clients that trained this round, and the raw tensor bytes sent each way.
    clients: int | None = None
    bytes_down: int | None = None
    bytes_up: int | None = None
    client_sizes: list[int] = Field(default_factory=list)
    label_skew: float | None = None
    client_final_losses: list[float] = Field(default_factory=list)
    clients_wall_s: float | None = None
    # Where the clients ran: "ray" (one Ray task each) or "sequential" (the round's process).
    client_executor: str | None = None
    state_path: str | None = None
    state_sha256: str | None = None
    adapter_params: int | None = None
    method_source_hash: str | None = None
    device: str | None = None
    # The round's CPU seconds, measured (time.process_time, torch's intra-op threads
    # included): its clients' together (each timed in the process it ran in; as Ray
    # tasks they run in parallel, so this can be several times clients_wall_s), and the
    # round's own process's (the server: model, aggregation, scoring), less any client
    # that ran in it, so none counts twice. NULL in rows stored before they were
    # measured, and in a failed round's. Last, so an older store gains them in place in
    # the order a new one has them.
    clients_cpu_s: float | None = None
    server_cpu_s: float | None = None


class FederatedMeasured(Outcome):
    """What the federated runner returns for one round."""

    measurements: FederatedMeasurements = Field(default_factory=FederatedMeasurements)
