"""Calibration recipes: shipped YAML files, sources (text, JSON lines, reference corpus, Hub),
seeded windows, chat templates, and the errors a user can cause."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from dsedge import reference
from dsedge.calib import CalibData
from dsedge.calib.recipes import list_recipes, load_recipe, resolve_calibration
from dsedge.check.accuracy import tokenize_lines as _tokenize_lines
from dsedge.errors import UsageError

REPO_RECIPES = Path(__file__).resolve().parents[2] / "calibration"
CHAT = "{% for m in messages %}<s> {{ m['content'] }}{% endfor %}"   # <s> is the reference BOS token


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(reference.checkpoint_path())


@pytest.fixture(scope="module")
def ref_stream(tok):
    return np.asarray(_tokenize_lines(tok, reference.calib_text_path().read_text(), "eos"), dtype=np.int64)


def _is_window_of(stream: np.ndarray, window: np.ndarray) -> bool:
    starts = np.flatnonzero(stream[: len(stream) - len(window) + 1] == window[0])
    return any(np.array_equal(stream[s:s + len(window)], window) for s in starts)


def test_every_shipped_recipe_validates_and_is_listed():
    shipped = {p.stem for p in REPO_RECIPES.glob("*.yaml")}
    assert {"reference", "gptq-default", "awq-default"} <= shipped
    assert shipped <= set(list_recipes())
    for p in REPO_RECIPES.glob("*.yaml"):
        load_recipe(p)


def test_published_defaults():
    gptq, awq = load_recipe(REPO_RECIPES / "gptq-default.yaml"), load_recipe(REPO_RECIPES / "awq-default.yaml")
    assert (gptq.samples, gptq.seq_len, gptq.source.dataset) == (128, 2048, "allenai/c4")
    assert (awq.samples, awq.seq_len, awq.source.dataset) == (128, 512, "mit-han-lab/pile-val-backup")
    for name in ("gptq-default", "awq-default"):       # each states where its numbers come from
        text = (REPO_RECIPES / f"{name}.yaml").read_text()
        assert "arXiv:" in text and "github.com/" in text


def test_default_is_the_reference_recipe(tok, ref_stream):
    calib = resolve_calibration(None, tok)
    assert isinstance(calib, CalibData)
    assert calib.input_ids.dtype == torch.int64 and tuple(calib.input_ids.shape) == (64, 128)
    assert calib.sha256 == hashlib.sha256(reference.calib_text_path().read_bytes()).hexdigest()
    d = calib.describe()
    assert d["samples"] == 64 and d["seq_len"] == 128 and d["recipe"]["name"] == "reference"
    assert d["recipe"]["seed"] == 0 and d["recipe"]["chat_template"] is False and "note" not in d["recipe"]
    json.dumps(d)                                       # goes into manifest.json as it is
    windows = calib.input_ids.numpy()
    assert all(_is_window_of(ref_stream, w) for w in windows)          # cut from the tokenized text
    assert len({w.tobytes() for w in windows}) == len(windows)


def test_reference_text_recipe_is_the_real_text_references_split():
    """`--calib reference-text`: 64 windows of 256 tokens of held-out KJV passages (qwen2-kjv's
    calibration split), cut from the lines joined with EOS as the model was trained."""
    tok = AutoTokenizer.from_pretrained(reference.checkpoint_path(reference.TEXT_MODEL))
    calib = resolve_calibration("reference-text", tok)
    assert tuple(calib.input_ids.shape) == (64, 256) and "note" not in calib.recipe
    assert calib.sha256 == hashlib.sha256(reference.text_calib_path().read_bytes()).hexdigest()
    assert "kjv/calib.txt" in calib.source
    stream = np.asarray(_tokenize_lines(tok, reference.text_calib_path().read_text(), "eos"), dtype=np.int64)
    assert all(_is_window_of(stream, w) for w in calib.input_ids.numpy())
    evals = set(reference.text_eval_path().read_text().splitlines())
    assert not evals & set(reference.text_calib_path().read_text().splitlines())


def test_windows_are_seeded(tok):
    a = resolve_calibration("reference", tok)
    b = resolve_calibration("reference", tok)
    c = resolve_calibration("reference", tok, seed=1)
    assert torch.equal(a.input_ids, b.input_ids)
    assert not torch.equal(a.input_ids, c.input_ids) and c.recipe["seed"] == 1


def test_overrides_and_plain_text_file(tmp_path, tok):
    f = tmp_path / "domain.txt"
    f.write_text("\n".join(reference.eval_text_path().read_text().splitlines()[:300]))
    calib = resolve_calibration(f, tok, samples=8, seq_len=32, seed=None)
    assert tuple(calib.input_ids.shape) == (8, 32) and calib.source == str(f)
    assert calib.sha256 == hashlib.sha256(f.read_bytes()).hexdigest()
    assert calib.recipe["file"] is None and calib.recipe["seed"] == 0        # None keeps the default
    with pytest.raises(UsageError, match="'source' cannot be overridden"):
        resolve_calibration(f, tok, source="reference")
    with pytest.raises(UsageError, match="samples=0"):
        resolve_calibration(f, tok, samples=0)


def test_short_text_says_so_and_too_short_errors(tmp_path, tok):
    f = tmp_path / "short.txt"
    f.write_text("tobi has a white dog .\n" * 30)                      # 6 words + EOS a line: 210 tokens
    calib = resolve_calibration(f, tok, seq_len=64)
    assert tuple(calib.input_ids.shape) == (3, 64)
    assert "fewer than samples x seq_len" in calib.recipe["note"] and calib.recipe["tokens_available"] == 210
    with pytest.raises(UsageError, match="fewer than one 512-token window"):
        resolve_calibration(f, tok, seq_len=512)


def test_jsonl_field_and_errors(tmp_path, tok):
    lines = reference.calib_text_path().read_text().splitlines()[:200]
    f = tmp_path / "data.jsonl"
    f.write_text("\n".join(json.dumps({"id": i, "body": s}) for i, s in enumerate(lines)))
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("source: {file: data.jsonl, field: body}\nsamples: 4\nseq_len: 64\nseed: 3\n")
    calib = resolve_calibration(recipe, tok)                          # relative to the recipe's folder
    assert tuple(calib.input_ids.shape) == (4, 64) and calib.recipe["name"] == "mine"
    stream = np.asarray(_tokenize_lines(tok, "\n".join(lines), "eos"), dtype=np.int64)
    assert all(_is_window_of(stream, w) for w in calib.input_ids.numpy())
    with pytest.raises(UsageError, match=r"line 1: no field 'text' \(found: id, body\)"):
        resolve_calibration(f, tok)                                   # plain .jsonl reads `text`
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a b"}\n{"text": oops}\n')
    with pytest.raises(UsageError, match="line 2: not valid JSON"):
        resolve_calibration(bad, tok)


def test_chat_template(tmp_path, tok):
    f = tmp_path / "c.txt"
    f.write_text("\n".join(reference.calib_text_path().read_text().splitlines()[:40]))
    with pytest.raises(UsageError, match="has no chat template") as e:
        resolve_calibration(f, tok, chat_template=True, seq_len=16)
    assert "chat_template: off" in e.value.fix
    chat_tok = AutoTokenizer.from_pretrained(reference.checkpoint_path())
    chat_tok.chat_template = CHAT
    off = resolve_calibration(f, chat_tok, seq_len=16, samples=1000)
    on = resolve_calibration(f, chat_tok, seq_len=16, samples=1000, chat_template=True)
    bos = chat_tok.bos_token_id
    assert int((off.input_ids == bos).sum()) == 0
    n_on = int((on.input_ids == bos).sum())                           # one <s> per record, minus the tail
    assert 40 - 16 < n_on <= 40 and on.recipe["chat_template"] is True
    msgs = tmp_path / "m.jsonl"
    msgs.write_text("\n".join(json.dumps({"messages": [{"role": "user", "content": s}]})
                              for s in f.read_text().splitlines()))
    rec = tmp_path / "m.yaml"
    rec.write_text("source: {file: m.jsonl, field: messages}\nchat_template: off\nseq_len: 16\nsamples: 1000\n")
    with pytest.raises(UsageError, match="holds chat messages, and chat_template is off"):
        resolve_calibration(rec, chat_tok)
    rec.write_text("source: {file: m.jsonl, field: messages}\nchat_template: on\nseq_len: 16\nsamples: 1000\n")
    assert torch.equal(resolve_calibration(rec, chat_tok).input_ids, on.input_ids)


@pytest.mark.parametrize("name", ["gptq-default", "awq-default"])
def test_hub_recipes_offline_error(name, tok, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UsageError, match=r"Hugging Face dataset .*\(offline\)") as e:
        resolve_calibration(name, tok)
    assert "--calib FILE.jsonl" in e.value.fix


def test_unreachable_hub_is_an_offline_error(tok, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")           # nothing listens on port 9
    with pytest.raises(UsageError, match=r"127\.0\.0\.1:9\) cannot be reached .*offline") as e:
        resolve_calibration("gptq-default", tok)
    assert "local" not in e.value.problem and "--calib FILE.jsonl" in e.value.fix


@pytest.mark.parametrize("body, match", [
    ("source: reference\nsamples: 8\nsequence: 64\n", r"bad\.yaml: sequence: unknown key"),
    ("source: reference\nsamples: '8'\n", r"bad\.yaml: samples: input should be a valid integer"),
    ("source: {file: x.jsonl, feild: text}\n", r"bad\.yaml: source\.feild: unknown key"),
    ("source: {dataset: a/b, split: train, colum: text}\n", r"bad\.yaml: source\.colum: unknown key"),
    ("chat_template: maybe\n", r"bad\.yaml: chat_template: input should be on, off or auto"),
    ("- a\n- b\n", r"bad\.yaml does not hold a mapping"),
    ("source: [unclosed\n", r"bad\.yaml is not valid YAML"),
])
def test_bad_recipe_names_file_and_key(tmp_path, tok, body, match):
    f = tmp_path / "bad.yaml"
    f.write_text(body)
    with pytest.raises(UsageError, match=match):
        resolve_calibration(f, tok)


def test_lookup_errors_and_extra_dir(tmp_path, tok):
    with pytest.raises(UsageError, match="unknown calibration recipe or file 'nope'") as e:
        resolve_calibration("nope", tok)
    assert "gptq-default" in e.value.fix
    with pytest.raises(UsageError, match="does not exist"):
        resolve_calibration(tmp_path / "missing.txt", tok)
    with pytest.raises(UsageError, match="does not exist"):
        resolve_calibration(tmp_path / "missing.yaml", tok)
    (tmp_path / "reference.yaml").write_text("source: reference\nsamples: 2\nseq_len: 32\n")
    calib = resolve_calibration("reference", tok, recipes_dir=tmp_path)     # the extra folder wins
    assert tuple(calib.input_ids.shape) == (2, 32) and calib.recipe["file"] == str(tmp_path / "reference.yaml")
