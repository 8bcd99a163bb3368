"""Streamlit pieces every page shares: the reader, the sidebar's filters (a benchmark
protocol first: every page shows one), the freshness note."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import streamlit as st

from leaderboard.data import Reader, db_path, freshness
from leaderboard.pagedata import (
    ALL_PROFILES,
    ALL_TASKS,
    Filters,
    choices,
    default_protocol,
    protocol_label,
    protocols,
)
from suite.store.store import StoreBusy

if TYPE_CHECKING:
    import pandas as pd

FILTER_KEYS = ("protocol", "task", "model", "profile")


def reader() -> Reader:
    """A reader of the app's database; stops the page with a hint when there is none."""
    r = Reader(db_path())
    if not r.exists():
        st.error(f"No results database at `{r.path}`. Run `peftbench run` first, or pass --db.")
        st.stop()
    return r


def guarded(fn, *args, **kwargs):
    """Call a data function; if a matrix holds the database and nothing is cached yet, say so.

    The first read after the file changes evaluates the store's views, which can take a
    while on a large database, so a spinner says what is happening.
    """
    try:
        with st.spinner("Reading the results (the first read after a change evaluates the views)"):
            return fn(*args, **kwargs)
    except StoreBusy:
        st.warning("A matrix is writing the database right now; this page will load in a moment.")
        if st.button("Retry"):
            st.rerun()
        st.stop()


def _select(label: str, options: list[str], key: str, default: int = 0, **shown) -> str:
    """A sidebar selectbox whose choice survives page switches (kept under `_keep_<key>`);
    `shown`: Streamlit's format_func and help."""
    kept = st.session_state.get(f"_keep_{key}")
    index = options.index(kept) if kept in options else default
    value = st.sidebar.selectbox(label, options, index=index, key=key, **shown)
    st.session_state[f"_keep_{key}"] = value
    return value


def protocol_select(r: Reader) -> str | None:
    """The benchmark protocol selector (the published league, or the protocol with the
    most rows, by default) and its budget in words; None while nothing is stored."""
    frame = guarded(protocols, r)
    if frame.empty:
        return None
    names = frame["protocol"].tolist()
    labels = dict(zip(names, frame["label"], strict=True))
    default = names.index(default_protocol(frame))
    # The stored ids (what `peftbench query` and CSV downloads name) only in the tooltip.
    ids = "; ".join(f"{labels[n]}: `{n}`" for n in names)
    name = _select(
        "Protocol", names, "protocol", default=default, format_func=labels.get,
        help=f"A protocol fixes tasks, model, budget, tuning rule and seeds. Stored ids: {ids}",
    )  # fmt: skip
    row = frame[frame["protocol"] == name].iloc[0]
    st.sidebar.caption(
        f"**{name.split('@', 1)[0]}**: {row['budget_words']}. Rows of other protocols (other "
        "budgets, tuning rules or tasks) are never ranked or charted with these."
    )
    return name


def protocol_words(r: Reader, protocol: str | None) -> str:
    """The protocol's label in words, for a page's caption."""
    return guarded(protocol_label, r, protocol)


def sidebar_filters(r: Reader) -> Filters | None:
    """Protocol, task (or all tasks), model and profile selectors, kept across pages."""
    protocol = protocol_select(r)
    frame = guarded(choices, r)
    frame = frame[frame["protocol"] == protocol]
    if frame.empty:
        st.sidebar.info("No successful results yet.")
        return None
    tasks = [ALL_TASKS, *sorted(frame["task"].unique())]
    task = _select("Task", tasks, "task", default=1 if len(tasks) > 1 else 0)
    models = sorted(frame["model"].unique())
    model = _select("Model", models, "model")
    scoped = frame[frame["model"] == model]
    profiles = [ALL_PROFILES, *sorted(scoped["profile"].unique())]
    profile = _select("Hardware profile", profiles, "profile")
    reference_only = _check(
        "Reference fidelity only",
        "reference_only",
        "Show only methods golden-tested against their own reference code "
        "(docs/fidelity.md); `paper` and `reconstructed` rows are hidden.",
    )
    return Filters(
        task=task, model=model, profile=profile, reference_only=reference_only, protocol=protocol
    )


def _check(label: str, key: str, help: str) -> bool:
    """A sidebar checkbox whose value survives page switches."""
    value = st.sidebar.checkbox(
        label, value=bool(st.session_state.get(f"_keep_{key}", False)), key=key, help=help
    )
    st.session_state[f"_keep_{key}"] = value
    return value


def freshness_note(r: Reader) -> None:
    """Say how fresh the data is, and warn while a matrix is still writing."""
    info = guarded(freshness, r)
    text = info.describe()
    if info.busy:
        st.sidebar.warning(text)
    else:
        st.sidebar.caption(text)
    st.sidebar.caption(f"Database: `{r.path}`")
    if st.sidebar.button("Reload data"):
        st.rerun()


def need_single_task(filters: Filters, tasks: list[str]) -> Filters:
    """Pages that chart one task fall back to the first one when 'all tasks' is chosen."""
    if filters.task != ALL_TASKS or not tasks:
        return filters
    st.info(f"This page shows one task at a time; showing **{tasks[0]}**.")
    return replace(filters, task=tasks[0])


def need_single_profile(filters: Filters, frame) -> Filters:
    """Costs compare only on one hardware profile: pick the one with the most results."""
    if filters.profile != ALL_PROFILES:
        return filters
    scoped = frame[
        (frame["task"] == filters.task)
        & (frame["model"] == filters.model)
        & (frame["protocol"] == filters.protocol)
    ]
    if scoped.empty:
        return filters
    profile = scoped.sort_values("n", ascending=False, kind="stable")["profile"].iloc[0]
    st.info(f"Costs are compared within one hardware profile; showing **{profile}**.")
    return replace(filters, profile=profile)


def scoped_choices(r: Reader, filters: Filters):
    """The selector rows (`choices`) of the filters' protocol only."""
    frame = guarded(choices, r)
    return frame[frame["protocol"] == filters.protocol]


def protocol_page_setup() -> tuple[Reader, str | None]:
    """The sidebar of a page that spans tasks and models: title, protocol, freshness."""
    st.sidebar.title("peftbench")
    r = reader()
    protocol = protocol_select(r)
    freshness_note(r)
    return r, protocol


def table_page(title: str, read, empty: str) -> tuple[Reader, pd.DataFrame]:
    """A page without filters built on one table: the shared sidebar, the title, and the
    table `read(reader)` gives; a page whose table is empty says `empty` and stops."""
    r, _ = page_setup(with_filters=False)
    st.title(title)
    rows = guarded(read, r)
    if rows.empty:
        st.info(empty)
        st.stop()
    return r, rows


def page_setup(with_filters: bool = True) -> tuple[Reader, Filters | None]:
    """The sidebar every page shares: title, filters (optional) and the freshness note."""
    st.sidebar.title("peftbench")
    r = reader()
    filters = sidebar_filters(r) if with_filters else None
    freshness_note(r)
    return r, filters
