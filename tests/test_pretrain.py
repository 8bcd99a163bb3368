"""The pretrain task type: the token stream, the budget in tokens, perplexity, the corpus
loader and the committed tokenizer, and a pretraining cell end to end (fast: a generated
corpus and a one-layer model; the real corpus runs in test_pretrain_smoke.py)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from suite.specs.matrix import Budget
from suite.tasks.encoding import collate_stream, encode_stream
from suite.tasks.loaders import TaskDataError
from suite.tasks.metrics import nll, perplexity
from suite.tasks.types import TASK_TYPES, make_task
from suite.train.loop import planned_steps
from tests.helpers import catalog

REPO = Path(__file__).resolve().parents[1]
TOKENIZER = REPO / "suite/models/tokenizers/python-docs-bpe-4k"


def lm_task(**extra):
    return make_task(
        name="t", type="pretrain", data={"loader": "files"}, text_fields=["text"],
        label_field="text", max_length=4, metrics=[{"name": "perplexity",
        "higher_is_better": False}], primary_metric="perplexity", **extra,
    )  # fmt: skip


class Letters:
    """A tokenizer stand-in: one id per character (a=1, b=2, ...), EOS 0."""

    eos_token_id = 0
    sep_token_id = None

    def __call__(self, texts, add_special_tokens=True, verbose=True):
        return {"input_ids": [[ord(c) - 96 for c in t] for t in texts]}


def test_pretrain_is_one_registered_type_without_a_baseline():
    entry = TASK_TYPES["pretrain"]
    assert entry.architectures == ("causal-lm",) and entry.label_kind == "text"
    with pytest.raises(ValueError, match="Input should be 'none'"):
        lm_task(baseline="majority")
    with pytest.raises(ValueError, match="at most 1 item"):
        make_task(**{**lm_task().model_dump(), "text_fields": ["a", "b"]})


def test_the_stream_joins_documents_with_eos_and_cuts_exact_rows():
    import pandas as pd

    frame = pd.DataFrame({"text": ["abc", "de", "fghij"]})
    split = encode_stream(lm_task(), frame, Letters())
    # a b c EOS d e EOS f g h i j EOS -> 13 tokens, 3 rows of 4, the last token dropped
    assert split.extra["tokens"].tolist() == [[1, 2, 3, 0], [4, 5, 0, 6], [7, 8, 9, 10]]
    assert split.extra["tokens"].dtype == np.int32 and len(split) == 3
    batch = collate_stream(split, np.array([2, 0]), pad_id=0)
    assert batch["input_ids"].tolist() == [[7, 8, 9, 10], [1, 2, 3, 0]]
    assert batch["target_mask"].all() and batch["labels"].tolist() == [2, 0]


def test_perplexity_pools_tokens_over_the_split():
    # Two sequences: 3 tokens at NLL 1 each, 1 token at NLL 5; pooled mean is 2, not 3.
    pred, gold = np.array([3.0, 5.0]), np.array([3.0, 1.0])
    assert nll(pred, gold) == pytest.approx(2.0)
    assert perplexity(pred, gold) == pytest.approx(math.exp(2.0))


def test_a_budget_in_tokens_sets_the_steps_and_leaves_old_cell_ids_alone():
    assert planned_steps(1000, 8, 1.0, None, tokens=409_600, seq_len=256) == 200
    assert planned_steps(1000, 8, 1.0, 50, tokens=409_600, seq_len=256) == 50
    assert planned_steps(1000, 8, 1.0, None) == 125  # epochs, as before
    from suite.cells import semantic

    assert "tokens" not in semantic(Budget().model_dump(mode="json"))


def _tiny_lm():
    import transformers

    from suite.models.taskmodel import TaskModel

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    return TaskModel(transformers.LlamaForCausalLM(config), 1, "last", 0).eval()


def test_predictions_are_summed_nll_per_sequence_and_eval_sequences_caps_them():
    from suite.train.evaluate import predict_token_nll

    model = _tiny_lm()
    ids = torch.randint(0, 50, (5, 6), generator=torch.Generator().manual_seed(1))
    batches = [{"input_ids": ids[:3]}, {"input_ids": ids[3:]}]
    logits = model.backbone(input_ids=ids).logits[:, :-1]
    logp = torch.log_softmax(logits.double(), -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    preds = predict_token_nll(model, batches, lm_task())
    assert np.allclose(preds.pred, -logp.sum(1).detach().numpy(), atol=1e-5)
    assert preds.gold.tolist() == [5.0] * 5
    capped = predict_token_nll(model, batches, lm_task(eval_sequences=4))
    assert len(capped.pred) == 4 and np.allclose(capped.pred, preds.pred[:4])


def _corpus(root: Path, texts: dict[str, str]) -> Path:
    folder = root / "usr/share/doc/python3.11/html/_sources"
    for rel, text in texts.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    return folder


def test_the_corpus_loader_splits_by_path_hash_and_checks_the_checksum(tmp_path, monkeypatch):
    entry = catalog().tasks.get("python-docs-lm")
    from suite.plugins import load_object

    load = load_object(entry.spec.data.loader, entry.folder)
    split_of = load_object("corpus.py:split_of", entry.folder)
    texts = {f"p{i}.rst.txt": f"page {i}" for i in range(40)}
    _corpus(tmp_path, texts)
    monkeypatch.setenv("PEFTBENCH_DEBIAN_ROOT", str(tmp_path))
    with pytest.raises(TaskDataError, match="another version of\\s+python3.11-doc"):
        load(entry.spec.data, entry.folder)
    data = entry.spec.data.model_copy(
        update={"options": {**entry.spec.data.options, "sha256": None}}
    )
    splits = load(data, entry.folder)
    for name, frame in splits.items():
        assert all(split_of(p, 5, 5) == name for p in frame["path"])
    assert sum(len(f) for f in splits.values()) == 40
    monkeypatch.setenv("PEFTBENCH_DEBIAN_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(TaskDataError, match="make corpus-deps"):
        load(entry.spec.data, entry.folder)


def test_the_committed_tokenizer_is_the_one_its_build_script_recorded():
    build = json.loads((TOKENIZER / "build.json").read_text())
    digest = hashlib.sha256((TOKENIZER / "tokenizer.json").read_bytes()).hexdigest()
    assert digest == build["tokenizer_json_sha256"] and build["vocab_size"] == 4096
    from suite.models.loading import load_tokenizer

    tok = load_tokenizer(catalog().models.get("llama-pt-1m").spec)
    assert len(tok) == 4096 and tok.eos_token_id == tok.pad_token_id == 0
    text = "    def f(x):\n        return x"
    assert tok.decode(tok(text)["input_ids"]) == text  # whitespace survives


@pytest.mark.parametrize(
    ("name", "total"), [("llama-pt-1m", 1_058_016), ("llama-pt-10m", 10_007_808),
                        ("llama-pt-60m", 56_560_128)],
)  # fmt: skip
def test_presets_have_the_parameter_counts_their_descriptions_state(name, total):
    import transformers

    spec = catalog().models.get(name).spec
    config = dict(spec.source.config)
    conf = transformers.AutoConfig.for_model(config.pop("model_type"), **config)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(conf)
    assert sum(p.numel() for p in model.parameters()) == total
    assert f"{total:,}" in spec.description


def _plugins(root: Path) -> Path:
    rng = np.random.default_rng(0)
    words = ["the", "module", "function", "returns", "a", "list", "of", "values", "see", "also"]
    for split, n in (("train", 60), ("validation", 8), ("test", 8)):
        docs = [{"text": " ".join(rng.choice(words, 40))} for _ in range(n)]
        (root / "tasks/tiny-lm").mkdir(parents=True, exist_ok=True)
        with open(root / f"tasks/tiny-lm/{split}.jsonl", "w") as f:
            f.writelines(json.dumps(d) + "\n" for d in docs)
    (root / "tasks/tiny-lm/task.yaml").write_text(
        textwrap.dedent("""\
        name: tiny-lm
        type: pretrain
        data: {loader: files, data_files: {train: train.jsonl, validation: validation.jsonl,
               test: test.jsonl}}
        text_fields: [text]
        label_field: text
        max_length: 32
        eval_batch_size: 4
        eval_sequences: 6
        metrics: [{name: perplexity, higher_is_better: false}, {name: nll, higher_is_better: false}]
        primary_metric: perplexity
        """)
    )
    (root / "models").mkdir()
    preset = textwrap.dedent(f"""\
        name: tiny-llama-pt
        family: llama
        architecture: causal-lm
        source:
          config: {{model_type: llama, vocab_size: 4096, hidden_size: 16, intermediate_size: 32,
                   num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 2,
                   max_position_embeddings: 64}}
        tokenizer: {{path: "{TOKENIZER}"}}
        target_modules: {{all-linear: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]}}
        """)
    (root / "models/tiny-llama-pt.yaml").write_text(preset)
    return root


def test_a_pretraining_cell_runs_through_the_cli(tmp_path):
    """Budget in tokens -> steps; perplexity on validation and test below the uniform
    4,096; tokens per second on the row; the SLTrain cell merges to the same outputs."""
    from tests.test_cli_e2e import cli

    plugins = _plugins(tmp_path / "plugins")
    matrix = tmp_path / "m.yaml"
    matrix.write_text(
        textwrap.dedent("""\
        name: lm
        models: [tiny-llama-pt]
        methods: [{method: full-rank, lr: 1.0e-2}, {method: sltrain, lr: 1.0e-2, params: {r: 4}}]
        tasks: [tiny-lm]
        seeds: [0]
        baseline_method: full-rank
        budget: {tokens: 2560, batch_size: 4, warmup_ratio: 0.0}
        """)
    )
    db = tmp_path / "lm.duckdb"
    env_root = os.environ.get("PEFTBENCH_DEBIAN_ROOT")
    assert env_root is None or Path(env_root).is_dir()
    run = cli("run", str(matrix), "--plugins", str(plugins), "--db", str(db), "--executor", "local")
    assert run.returncode == 0, run.stderr[-3000:]
    out = cli(
        "query",
        "select method, status, train_steps, train_tokens, tokens_per_s, val_perplexity, "
        "test_perplexity, test_nll, merge_max_abs_diff, task_type from results order by method",
        "--db", str(db), "--format", "json",
    )  # fmt: skip
    rows = json.loads(out.stdout)
    assert [r["method"] for r in rows] == ["full-rank", "sltrain"]
    for r in rows:
        assert r["status"] == "ok" and r["task_type"] == "pretrain"
        assert r["train_steps"] == 2560 // (4 * 32) and r["train_tokens"] == 2560
        assert r["tokens_per_s"] > 0
        assert 1 < r["val_perplexity"] < 4096 and 1 < r["test_perplexity"] < 4096
        assert r["test_perplexity"] == pytest.approx(math.exp(r["test_nll"]))
    assert rows[1]["merge_max_abs_diff"] < 1e-4
    _overview_shows_the_papers_numbers_apart(db)


def _overview_shows_the_papers_numbers_apart(db: Path) -> None:
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    from leaderboard.catalog import written_name

    os.environ["PEFTBENCH_DB"] = str(db)
    try:
        at = AppTest.from_file(str(REPO / "leaderboard/app.py"), default_timeout=120).run()
    finally:
        del os.environ["PEFTBENCH_DB"]
    assert not at.exception, at.exception
    assert [s.value for s in at.main.subheader] == ["Reported in papers, not measured here"]
    measured, reported = at.dataframe[0].value, at.dataframe[1].value
    # Tables write each method as its paper does (its `display`), not by its label.
    written = {written_name(m) for m in ("full-rank", "sltrain")}
    assert written == {"full-rank training", "SLTrain"}
    assert set(measured["Method"]) == written and "Tokens/s" in measured
    assert len(reported) == 20 and set(reported["Provenance"]) == {
        "reported in paper, not measured here"
    }
    assert reported["Source"].str.endswith("Table 2").all()


def test_store_init_loads_the_reference_numbers_once_and_marks_them_unmeasured(tmp_path):
    from leaderboard.data import Reader
    from leaderboard.pagedata import reference_rows
    from suite.store.store import Store

    store = Store(tmp_path / "r.duckdb")
    store.init()
    store.init()  # re-reading the files replaces the rows, never duplicates them
    rows = store.query("select * from reference_results order by method, tokens")
    assert len(rows) == 20 and not rows["measured"].any()
    galore_60m = rows[(rows["method"] == "GaLore") & (rows["model"] == "LLaMA 60M")].iloc[0]
    assert galore_60m["value"] == 34.88 and galore_60m["table_ref"] == "Table 2"
    assert galore_60m["tokens"] == 1_100_000_000 and galore_60m["arxiv"] == "2403.03507v2"
    reader = Reader(store.path)
    assert len(reference_rows(reader, ["pretrain"])) == 20
    assert reference_rows(reader, ["classification"]).empty


def test_reference_rows_are_empty_for_a_store_without_the_table(tmp_path):
    import duckdb

    from leaderboard.data import Reader
    from leaderboard.pagedata import reference_rows

    path = tmp_path / "old.duckdb"
    duckdb.connect(str(path)).close()
    assert reference_rows(Reader(path), ["pretrain"]).empty


def test_a_reference_file_without_its_table_is_refused(tmp_path):
    from suite.errors import SpecError
    from suite.store.references import load_reference_files

    text = (REPO / "suite/references/pretrain-c4.yaml").read_text()
    (tmp_path / "bad.yaml").write_text(text.replace("    table: Table 2\n", ""))
    with pytest.raises(SpecError, match="table"):
        load_reference_files(tmp_path)
