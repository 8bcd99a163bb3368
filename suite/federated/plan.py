"""A federated matrix's plan: one run per trained cell x split x rule, run round by round.

The first wave is every run's next round (round 0 when it has none stored, else the
round after its last stored one); each later wave (a phase of the driver, built from
what the store holds then) is the next round again. A run resumes at the round after
the last one stored ok whose global adapter is still on disk, so a killed run loses
only the rounds in flight; a run whose last round is stored ok is complete, adapters on
disk or not (a published run's are not). There are as many waves as a run has rounds,
so every run finishes in one `peftbench run`, however far it had got.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from suite.cells import Cell, PhaseCells
from suite.federated.cells import FederatedRound
from suite.results import CellReport
from suite.track_results import FederatedMeasured


@dataclass(frozen=True)
class FederatedOutcome:
    """What the run summary and the progress display keep of a round's result."""

    status: str
    error: str | None
    hostname: str | None
    summary: str


def outcome(cell: FederatedRound, report: CellReport) -> FederatedOutcome:
    measured = report.measured
    text = (measured.error or "")[-200:]
    if measured.status == "ok" and isinstance(measured, FederatedMeasured):
        m = measured.measurements
        text = (
            f"round {m.round}: validation {m.metric} {m.validation_score:.4f}, "
            f"test {m.test_score:.4f}, {(m.bytes_up or 0) + (m.bytes_down or 0)} bytes"
        )
    return FederatedOutcome(measured.status, measured.error, report.placement.hostname, text)


def check_rules(entry) -> None:
    """Every aggregation the matrix names is a rule (a SpecError with a did-you-mean)."""
    from suite.errors import SpecError, unknown_name_message
    from suite.federated.aggregate import RULES

    for name in entry.spec.federated.aggregations:
        if name not in RULES:
            raise SpecError.single(
                str(entry.path), entry.line("federated"), "federated.aggregations",
                unknown_name_message("aggregation rule", name, RULES),
            )  # fmt: skip


def federated_starts(entry, cells: list[Cell], state_root: Path) -> list[FederatedRound]:
    """Round 0 of every run of the matrix `entry`: its trained cells x its run specs."""
    runs = entry.spec.federated.runs()
    return [
        FederatedRound(cell=cell, spec=spec, round=0, state_root=str(state_root))
        for cell in cells
        for spec in runs
    ]


def next_rounds(starts: list[FederatedRound], store, since: datetime | None) -> PhaseCells:
    """Every round of every run (`cells`), and each unfinished run's next round (`todo`)."""
    from suite.store.federated import stored_rounds

    stored = stored_rounds(store, [s.fed_run for s in starts], since)
    todo = []
    for start in starts:
        done = stored.get(start.fed_run, set())
        if start.spec.rounds in done:  # complete: its adapters are needed by no next round
            continue
        kept = [k for k in done if start.state_path(k).exists()]
        k = max(kept) + 1 if kept else 0
        if k <= start.spec.rounds:
            todo.append(start.model_copy(update={"round": k}))
    every = [s.model_copy(update={"round": k}) for s in starts for k in range(s.spec.rounds + 1)]
    return PhaseCells(cells=every, todo=todo)


def plan_federated(entry, cells: list[Cell], store, rerun: bool):
    """The federated plan's parts: every round cell, the first wave, the later waves
    (one per round a run can still need), and how many rounds are stored already."""
    from suite.artifacts import federated_root

    check_rules(entry)
    starts = federated_starts(entry, cells, federated_root(store.path))
    since = datetime.now(UTC).replace(tzinfo=None) if rerun else None
    first = next_rounds(starts, store, since)
    waves = max((s.spec.rounds for s in starts), default=0)
    phases = [lambda st: next_rounds(starts, st, since)] * waves
    remaining = sum(s.spec.rounds + 1 - t.round for s, t in _pairs(starts, first.todo))
    return first, phases, len(first.cells) - remaining


def _pairs(starts: list[FederatedRound], todo: list[FederatedRound]):
    by_run = {t.fed_run: t for t in todo}
    return [(s, by_run[s.fed_run]) for s in starts if s.fed_run in by_run]


def stored_count(cells: list[FederatedRound], store) -> int:
    """How many of these round cells the store holds ok (what a stopped run kept)."""
    from suite.store.federated import stored_rounds

    stored = stored_rounds(store, sorted({c.fed_run for c in cells}))
    return sum(1 for c in cells if c.round in stored.get(c.fed_run, ()))
