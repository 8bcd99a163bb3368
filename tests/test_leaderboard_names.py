"""The pages write each method as its paper does (`leaderboard.catalog.written_names`):
the method's `display`, a matrix entry's `display_name`, else the label the rows keep."""

from __future__ import annotations

import pandas as pd

from leaderboard import catalog
from leaderboard.catalog import distinct, written_name, written_names


def test_a_method_under_its_own_name_is_its_display():
    assert written_name("lora") == "LoRA"
    assert written_name("peft-ia3") == "(IA)3"
    assert written_name("lora", ["league"]) == "LoRA"  # the matrix entry says the same


def test_a_labelled_variant_is_its_entry_display_name_else_its_label():
    assert written_name("rslora", ["league"]) == "rsLoRA"  # league.yaml's display_name
    assert written_name("shira-snip", ["league"]) == "SHiRA (SNIP mask)"
    # A variant no matrix here explains (the fixture's own matrix) keeps its label.
    assert written_name("lora-r16", ["demo"]) == "lora-r16"
    assert written_name("rslora") == "rslora"


def test_a_users_method_without_display_keeps_its_label():
    assert written_name("my-own-method", ["my-matrix"]) == "my-own-method"


def test_matrices_that_write_a_label_differently_keep_the_label(monkeypatch):
    monkeypatch.setattr(catalog, "_entry_names", lambda: {("a", "x"): "X1", ("b", "x"): "X2"})
    assert written_name("x", ["a"]) == "X1"
    assert written_name("x", ["a", "b"]) == "x"


def test_two_labels_written_alike_each_add_their_label(monkeypatch):
    """A labelled variant whose display_name repeats its method's `display` would show two
    "LoRA" rows; each then names its label, and a label seen twice keeps one name."""
    monkeypatch.setattr(catalog, "_entry_names", lambda: {("m", "lora-big"): "LoRA"})
    rows = pd.DataFrame(
        {
            "method": ["lora", "lora-big", "lora", "peft-ia3", "mine"],
            "matrix": [None, "m", "other,m", "m", float("nan")],
        }
    )
    assert written_names(rows).tolist() == [
        "LoRA (lora)", "LoRA (lora-big)", "LoRA (lora)", "(IA)3", "mine",
    ]  # fmt: skip
    assert distinct({"a": "A", "b": "b", "c": "b"}) == {"a": "A", "b": "b", "c": "b (c)"}


def test_posthoc_rows_show_their_method_s_display_and_labelled_stages_keep_their_label():
    """The Merging and Compression pages showed "ties" and "magnitude"; a merge or
    compress method's `display` (posthoc.yaml) is what they show now."""
    import pandas as pd

    from leaderboard.catalog import posthoc_names

    labels = pd.Series(["ties", "magnitude-50", "linear", "mine"])
    methods = pd.Series(["ties", "magnitude", "linear", "mine"])
    shown = posthoc_names(labels, methods).tolist()
    assert shown == ["TIES-merging", "magnitude-50", "linear average", "mine"]
