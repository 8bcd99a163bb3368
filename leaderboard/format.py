"""Numbers as people read them: counts with separators (or k/M/B when large), bytes in
KiB/MiB/GiB, durations in ms/s/min/h, scores to four places, and "–" where a value is
missing. Tables keep their raw numbers (so sorting and CSV downloads stay exact) and are
shown through `styled`, which formats each column by its kind."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import pandas as pd

MISSING = "–"


def missing(value) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _or_missing(fmt: Callable[[object], str]) -> Callable[[object], str]:
    """`fmt` for a present value, "–" for a missing one (None, NaN, NaT)."""

    @functools.wraps(fmt)
    def formatted(value) -> str:
        return MISSING if missing(value) else fmt(value)

    return formatted


@_or_missing
def count(value) -> str:
    """77,578; 22.7 M; 3.21 B."""
    n = float(value)
    for limit, suffix in ((1e9, "B"), (1e6, "M")):
        if abs(n) >= limit:
            return f"{n / limit:.3g} {suffix}"
    return f"{round(n):,}"


@_or_missing
def nbytes(value) -> str:
    """1.69 GiB; 607 MiB; 12.3 KiB; 512 B."""
    b = float(value)
    for power, unit in ((3, "GiB"), (2, "MiB"), (1, "KiB")):
        if abs(b) >= 1024**power:
            return f"{b / 1024**power:.3g} {unit}"
    return f"{b:.0f} B"


@_or_missing
def duration(value) -> str:
    """Seconds as 44 ms, 60.3 s, 1 min 45 s, 2.1 h."""
    s = float(value)
    if s < 1:
        return f"{s * 1000:.3g} ms"
    if s < 60:
        return f"{s:.3g} s"
    if s < 3600:  # round the whole first: 119.6 s is 2 min 0 s, not 1 min 60 s
        whole = round(s)
        return f"{whole // 60} min {whole % 60} s"
    return f"{s / 3600:.2g} h"


def _scaled(spec: str, unit: str = "", times: float = 1.0, per: float = 1.0):
    """A formatter: float(value) * times / per through the format `spec`, then `unit`."""
    return _or_missing(lambda value: f"{float(value) * times / per:{spec}}{unit}")


score = _scaled(".4f")
percent = _scaled(".3g", " %")
share = _scaled(".0f", " %", times=100)  # a fraction as a percentage: 0.5 -> 50 %
bandwidth = _scaled(".3g", " GB/s", per=1e9)


@_or_missing
def p_value(value) -> str:
    """Two significant digits, as docs/league.md and the README write them: 1, 0.021,
    0.0077; "<1e-4" below 1e-4."""
    p = float(value)
    return f"{p:.2g}" if p >= 1e-4 else "<1e-4"


@_or_missing
def flops(value) -> str:
    """FLOP/s as 50.9 TFLOP/s."""
    f = float(value)
    for power, unit in ((12, "TFLOP/s"), (9, "GFLOP/s"), (6, "MFLOP/s")):
        if f >= 10**power:
            return f"{f / 10**power:.3g} {unit}"
    return f"{f:.3g} FLOP/s"


@_or_missing
def text(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return f"{int(value)}"
    return str(value)


@_or_missing
def number(value) -> str:
    """A measured float to 4 significant digits: 0.14285714285714285 -> 0.1429."""
    f = float(value)
    return f"{int(f)}" if f.is_integer() else f"{f:.4g}"


@_or_missing
def timestamp(value) -> str:
    """To the second, in the store's time zone (UTC)."""
    return f"{pd.Timestamp(value):%Y-%m-%d %H:%M:%S}"


FORMATS: dict[str, Callable[[object], str]] = {
    "time": timestamp,
    "count": count,
    "bytes": nbytes,
    "duration": duration,
    "score": score,
    "p": p_value,
    "percent": percent,
    "percent_share": share,
    "flops": flops,
    "bandwidth": bandwidth,
    "text": text,
    "number": number,
}

# People's names for the store's column names, for frames of SQL (saved queries, the SQL
# box's charts): a column not here keeps its name with "_" read as a space.
COLUMN_LABELS = {
    "method_kind": "Method kind",
    "sweep_param": "Swept hyperparameter",
    "sweep_value": "Hyperparameter value",
    "mean": "Mean test score",
    "ci_low": "95% interval, low",
    "ci_high": "95% interval, high",
    "ci_width": "Width of the 95% interval",
    "ci_kind": "Interval over",
    "std": "Std over seeds",
    "n_seeds": "Seeds",
    "n_failed": "Failed",
    "n_trials": "Trials",
    "lr": "Learning rate",
    "k": "Trials so far (k)",
    "trainable_params": "Trainable parameters",
    "expected_best_val": "Expected best validation score",
    "expected_best_val_std": "Its std",
    "expected_test_of_selected": "Test score of the selected config",
}


def column_label(name: str) -> str:
    """The label a page shows for a store column (see COLUMN_LABELS)."""
    return COLUMN_LABELS.get(name) or name.replace("_", " ").capitalize()


def styled(frame: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """`frame` as people read it: each column formatted by its kind ("text" by default),
    missing values as "–". Strings: Streamlit draws a missing cell as "None" whatever a
    Styler says, so the page shows these, and its CSV download keeps the raw numbers."""
    return pd.DataFrame(
        {col: frame[col].map(FORMATS[kinds.get(col, "text")]) for col in frame.columns},
        index=frame.index,
    )


def auto_kinds(frame: pd.DataFrame) -> dict[str, str]:
    """Kinds guessed from the store's column names, for frames of arbitrary SQL: *_bytes
    are bytes, *_s durations, counts of parameters and seeds counts, means and interval
    bounds scores, p_value a p-value."""
    kinds = {}
    for col in frame.columns:
        name = str(col)
        if name.endswith("_bytes"):
            kinds[col] = "bytes"
        elif name.endswith("_s") and pd.api.types.is_numeric_dtype(frame[col]):
            kinds[col] = "duration"
        elif name.endswith("_params") or name in ("cell_runs", "train_tokens"):
            kinds[col] = "count"
        elif name in (
            "mean",
            "ci_low",
            "ci_high",
            "std",
            "ci_width",
            "val_score",
            "mean_score",
        ) or name.startswith(("val_", "test_")):
            kinds[col] = "score" if pd.api.types.is_numeric_dtype(frame[col]) else "text"
        elif name in ("p_value", "p_holm"):
            kinds[col] = "p"
        elif name in ("n_seeds", "n_failed", "n_trials"):
            kinds[col] = "count"
        elif pd.api.types.is_float_dtype(frame[col]):
            kinds[col] = "number"  # never 0.14285714285714285
    return kinds


# The kinds above as d3 formats, for chart axes and tooltips (Vega formats in the
# browser): scores to 3 places on an axis (a tick is coarser than a table cell) and to 4 in
# a tooltip, as `score` does; p-values to 2 significant digits, as `p_value` does; other
# measures to 4 significant digits, as `number` does.
_D3 = {"score": (".3f", ".4f"), "p": (".2~g", ".2~g"), "count": (",d", ",d")}


def d3_format(values: pd.Series, kind: str | None = None, axis: bool = True) -> str:
    """The d3 format a chart reads `values` (of `kind`, see `auto_kinds`) with: whole
    numbers as integers ("8", never "8.000000"), scores to 3 (axis) or 4 (tooltip) places."""
    present = pd.to_numeric(values, errors="coerce").dropna()
    if kind in _D3:
        return _D3[kind][0 if axis else 1]
    if len(present) and (present == present.round()).all():
        return ",d"
    return ".4~g"


def axis_format(values: pd.Series, kind: str | None = None) -> dict:
    """An Altair axis's arguments for `values`: their d3 format, and whole-number ticks
    only on a whole-number axis (ticks at 7.5 would read "8" twice)."""
    form = d3_format(values, kind)
    return {"format": form, **({"tickMinStep": 1} if form == ",d" else {})}


def styled_auto(frame: pd.DataFrame, labels: bool = False):
    """`styled` with kinds guessed from the column names; with `labels`, the columns
    renamed to people's labels (the SQL box keeps the names its query wrote)."""
    out = styled(frame, auto_kinds(frame))
    return out.rename(columns=lambda c: column_label(str(c))) if labels else out
