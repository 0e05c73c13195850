"""`--calib self` / `--eval self`: text the FP16 model samples itself (calib/generate.py), on the
reference checkpoints, through the recipe machinery and the real CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from dsedge import reference
from dsedge.calib.generate import GenerateSpec, generate_stream, render_prompt
from dsedge.calib.recipes import resolve_calibration, self_eval_stream
from dsedge.check.accuracy import EvalData, eval_from_stream, evaluate
from dsedge.errors import UsageError
from dsedge.load.checkpoint import open_checkpoint
from dsedge.stages.quantize import round_to_fp16

CHAT = "{% for m in messages %}<|user|>{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"


@pytest.fixture(scope="module")
def qwen2():
    ck = open_checkpoint(reference.checkpoint_path("qwen2-tiny"))
    return ck, ck.tokenizer(), round_to_fp16(ck.load_model(torch.float32))


def test_stream_is_seeded_scored_and_leaves_the_global_rng_alone(qwen2):
    _, tok, model = qwen2
    spec = GenerateSpec(prompts=("one plus", "the chant goes"), new_tokens=24, batch=4)
    torch.manual_seed(123)
    expect = torch.rand(3)
    torch.manual_seed(123)
    a = generate_stream(model, tok, spec, tokens=400, seed=0)
    assert torch.equal(torch.rand(3), expect)                        # sampling ran in a forked RNG
    b = generate_stream(model, tok, spec, tokens=400, seed=0)
    c = generate_stream(model, tok, spec, tokens=400, seed=1)
    assert a.ids == b.ids and a.sha256 == b.sha256
    assert a.ids != c.ids and a.sha256 != c.sha256
    assert len(a.ids) >= 400 and len(a.scored) == len(a.ids) and a.records % 4 == 0
    # every record: its prompt (not scored), then the continuation ending in EOS (scored)
    eos, prompts = tok.eos_token_id, [render_prompt(tok, p, False) for p in spec.prompts]
    i = rec = 0
    while i < len(a.ids):
        p = prompts[(rec // 4) % 2]
        assert a.ids[i:i + len(p)] == p and not any(a.scored[i:i + len(p)])
        end = a.ids.index(eos, i + len(p))
        assert end - i - len(p) < spec.new_tokens + 1 and all(a.scored[i + len(p):end + 1])
        i, rec = end + 1, rec + 1
    assert rec == a.records and not a.chat_template


def test_chat_template_renders_each_prompt_as_a_turn(qwen2):
    ck, _, model = qwen2
    tok = ck.tokenizer()
    spec = GenerateSpec(prompts=("one plus",), new_tokens=8, batch=2, max_records=2)
    with pytest.raises(UsageError, match="has no chat template"):
        generate_stream(model, tok, spec, tokens=10, seed=0, chat_template=True)
    plain = generate_stream(model, tok, spec, tokens=10, seed=0)            # auto: no template, plain text
    tok.chat_template = CHAT
    turn = tok(tok.apply_chat_template([{"role": "user", "content": "one plus"}], tokenize=False,
                                       add_generation_prompt=True), add_special_tokens=False)["input_ids"]
    on = generate_stream(model, tok, spec, tokens=10, seed=0)               # auto: the template
    assert on.chat_template and on.ids[:len(turn)] == turn and plain.ids[:len(turn)] != turn
    assert "chat template" in on.label and "chat template" not in plain.label


@pytest.mark.parametrize("name", list(reference.REFERENCE_MODELS))
def test_self_recipe_works_offline_on_every_reference(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ck = open_checkpoint(reference.checkpoint_path(name))
    tok = ck.tokenizer()
    loads = []

    def model():
        loads.append(1)
        return round_to_fp16(ck.load_model(torch.float32))

    calib = resolve_calibration("self", tok, model=model, samples=8, seq_len=64)
    assert tuple(calib.input_ids.shape) == (8, 64) and loads == [1]
    d = calib.describe()
    assert d["source"].startswith("self-generated:") and "seed 0" in d["source"]
    assert d["recipe"]["name"] == "self" and d["recipe"]["source"]["generate"]["temperature"] == 0.6
    json.dumps(d)
    ids = calib.input_ids.numpy()
    assert ids.min() >= 0 and ids.max() < ck.config.vocab_size
    with pytest.raises(UsageError, match="no model was given"):
        resolve_calibration("self", tok)


def test_eval_scores_only_the_continuations(qwen2):
    """With every prompt token masked out, the perplexity is that of the continuations alone,
    computed here from the model's own logits."""
    _, tok, model = qwen2
    stream = self_eval_stream(tok, lambda: model, tokens=4 * 128)
    data = eval_from_stream(tok, stream, window=128, max_windows=4)
    assert data.scored.shape == data.windows.shape and 0 < data.scored[:, 1:].sum() < data.scored[:, 1:].size
    assert "seed 1" in data.source and data.describe()["scored_tokens"] == int(data.scored[:, 1:].sum())

    def fn(ids):
        with torch.no_grad():
            return model(torch.from_numpy(ids)).logits.float().numpy()

    ppl = evaluate({"m": fn}, data)["m"].perplexity
    x = torch.from_numpy(data.windows)
    with torch.no_grad():
        lp = model(x).logits.double().log_softmax(-1)[:, :-1]
    nll = -lp.gather(-1, x[:, 1:, None]).squeeze(-1)[torch.from_numpy(data.scored[:, 1:])]
    assert ppl == pytest.approx(float(nll.mean().exp()), rel=1e-6)
    full = evaluate({"m": fn}, EvalData(data.windows, [], data.source, data.sha256, 128))
    assert full["m"].perplexity != pytest.approx(ppl, rel=1e-3)          # the mask is what changed it


def test_build_with_calib_self_and_eval_self(tmp_path):
    """The user's command: GPTQ calibrated on the model's own text, evaluated on other samples of it."""
    out = tmp_path / "gptq"
    proc = subprocess.run([sys.executable, "-m", "dsedge", "build", "--method", "gptq", "--calib", "self",
                           "--eval", "self", "--no-latency", "--json", "-o", str(out)], capture_output=True,
                          text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json.loads(proc.stdout)["eval"]["source"].startswith("self-generated:")   # no library log on stdout
    m = json.loads((out / "manifest.json").read_text())
    r = json.loads((out / "report.json").read_text())
    cal = next(v for k, v in _walk(m) if k == "calibration")
    assert cal["source"].startswith("self-generated:") and cal["recipe"]["seed"] == 0
    assert r["eval"]["source"].startswith("self-generated:") and "seed 1" in r["eval"]["source"]
    assert r["eval"]["sha256"] != cal["sha256"] and r["eval"]["scored_tokens"] > 0
    assert not (tmp_path / "self").exists()


def _walk(d):
    if isinstance(d, dict):
        for k, v in d.items():
            yield k, v
            yield from _walk(v)
