"""Train the byte-level BPE tokenizer of the small pretraining presets, once.

suite/models/tokenizers/python-docs-bpe-4k/ (committed) was produced by

    python tasks/python-docs-lm/build_tokenizer.py

from the *train* split of the python-docs-lm task (tasks/python-docs-lm: Debian's
python3.11-doc reStructuredText sources, pages whose path hash puts them in train; the
validation and test pages are never seen), with Hugging Face `tokenizers` (the version
is recorded in the folder's build.json): byte-level pre-tokenisation (whitespace and
newlines are kept, so code indentation survives), BPE with 4,096 tokens including the one
special token <|endoftext|> (EOS, also used as padding), minimum pair frequency 2, the
pages fed in path order. Rerunning it reproduces the same tokenizer.json (its SHA-256 is
in build.json; tests/test_pretrain.py checks the committed file against it).

A 4,096-token vocabulary keeps the LM head small enough for CPU runs: with MiniLM's
30,522 WordPiece tokens, 95% of a 1M-parameter model is its embedding and the vocabulary
projection dominates each step.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "suite/models/tokenizers/python-docs-bpe-4k"
VOCAB = 4096
EOS = "<|endoftext|>"


def train_pages() -> list[str]:
    sys.path.insert(0, str(ROOT))
    from suite.registry import Catalog
    from suite.tasks.data import load_task_data

    entry = Catalog.discover().tasks.get("python-docs-lm")
    return load_task_data(entry.spec, entry.folder).splits["train"]["text"].tolist()


def main() -> None:
    import tokenizers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        min_frequency=2,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(train_pages(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS)
    fast.model_max_length = 1 << 30
    fast.save_pretrained(str(OUT))
    digest = hashlib.sha256((OUT / "tokenizer.json").read_bytes()).hexdigest()
    build = {"vocab_size": tok.get_vocab_size(), "tokenizers": tokenizers.__version__,
             "tokenizer_json_sha256": digest, "trained_on": "python-docs-lm train split"}  # fmt: skip
    (OUT / "build.json").write_text(json.dumps(build, indent=2) + "\n")
    print(json.dumps(build))


if __name__ == "__main__":
    main()
