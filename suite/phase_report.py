"""The phase breakdown `peftbench run` prints at the end: one short line per cell."""

from __future__ import annotations

from collections.abc import Iterable

from suite.results import PHASES, phase_column

# Shorter names for the printed line (the columns keep the full ones).
_LABEL = {"data_load": "data", "model_load": "model", "result_to_row": "store"}


def phase_line(title: str, result) -> str | None:
    """'title: 61.2 s = train 48.0 (78%), evaluate 6.1 (10%), ...' (largest first; phases
    under 1% of the total folded into 'rest'); None when the row has no phases."""
    total = getattr(result, "cell_total_s", None)
    if not total:
        return None
    seconds = {p: getattr(result, phase_column(p), None) or 0.0 for p in PHASES}
    shown, rest = [], 0.0
    for phase, s in sorted(seconds.items(), key=lambda kv: -kv[1]):
        if s >= 0.01 * total:
            shown.append(f"{_LABEL.get(phase, phase)} {s:.1f} ({s / total:.0%})")
        else:
            rest += s
    cached = [k for k in ("model", "data") if getattr(result, f"{k}_cached", None)]
    tail = f"; cached: {', '.join(cached)}" if cached else ""
    return f"{title}: {total:.1f} s = {', '.join(shown)}, rest {rest:.1f}{tail}"


def phase_report(pairs: Iterable[tuple[str, object]]) -> list[str]:
    """The lines for (title, result) pairs that have phases, with a heading."""
    lines = [line for title, result in pairs if (line := phase_line(title, result))]
    return ["where the time went (dispatch to stored row):", *lines] if lines else []
