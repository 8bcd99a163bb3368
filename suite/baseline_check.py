"""A cell that ends where the task's trivial baseline is learned nothing: at a small
budget every method can score exactly the majority class. `peftbench run` warns about
each such cell, so a too-small budget is not read as a method's result."""

from __future__ import annotations

from collections.abc import Iterable

# Scores within this distance of the baseline count as equal (floating-point sums).
TOLERANCE = 1e-9


def baseline_reason(cell, result) -> str | None:
    """Why `result` sits at its task's majority baseline (its score equals the stored
    baseline, or every prediction is one class), or None. Test split first; a tuning
    trial, scored on validation only, is judged there."""
    if getattr(result, "status", None) != "ok" or cell.task.baseline != "majority":
        return None
    metric = cell.task.primary_metric
    split, scores, baselines = "test", result.test_metrics, result.baseline_test
    if metric not in scores:
        split, scores, baselines = "validation", result.val_metrics, result.baseline_val
    score, baseline = scores.get(metric), baselines.get(metric)
    if score is not None and baseline is not None and abs(score - baseline) <= TOLERANCE:
        return f"{split} {metric} {score:.4f} equals the majority baseline"
    predictions = result.predictions.get(split)
    if predictions is not None and len(predictions.gold) > 1:
        classes = {p for p in predictions.pred if p is not None}
        if len(classes) == 1 and len(set(predictions.gold)) > 1:
            (only,) = classes
            shown = int(only) if isinstance(only, float) and only.is_integer() else only
            return f"every {split} prediction is one class ({shown})"
    return None


def baseline_warnings(cells: Iterable, results: Iterable) -> list[str]:
    """One line per result at its majority baseline, naming the cell and its budget."""
    from suite.store.protocols import budget_words

    by_id = {cell.cell_id: cell for cell in cells}
    lines = []
    for result in results:
        cell = by_id.get(getattr(result, "cell_id", None))
        reason = baseline_reason(cell, result) if cell is not None else None
        if reason:
            budget = budget_words(cell.budget.model_dump(mode="json"))
            lines.append(
                f"warning: {cell.method.label} on {cell.task.name} (seed {cell.seed}): {reason}; "
                f"the budget ({budget}) is probably too small for it to learn the task "
                "(raise budget.epochs or budget.max_steps)"
            )
    return lines
