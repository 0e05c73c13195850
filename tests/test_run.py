"""`dsedge run`: the artifact's tokenizer gives transformers' ids, greedy decoding through the
KV cache gives the tokens dsedge's check sessions give, the text streams, and the CLI prints it
(or JSON) with the speeds; bad inputs exit 2 with the fix."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from transformers import AutoTokenizer

from dsedge.check.session import OnnxDecoder
from dsedge.run import Runner, generate

PROMPT = "Once upon a time"


@pytest.fixture(scope="module")
def artifact(built):
    return built("qwen2-tiny", "rtn").path


def _cli(*args, stdin: str = ""):
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "dsedge", "run", *map(str, args)], input=stdin, text=True,
                          capture_output=True, env=env, timeout=300)


def test_prompt_ids_are_transformers_ids(artifact):
    ids = Runner(artifact).encode(PROMPT)
    assert ids == AutoTokenizer.from_pretrained(str(artifact))(PROMPT).input_ids and ids[0] == 0   # BOS


# Where the host graph (FP32 activations) and model.onnx (FP16) part, model.onnx's logits for the
# two tokens must be this close: a tie at FP16's resolution of logits near 10 (2026-12-06: 146 and
# 138 both 10.6171875), not a wrong graph.
TIE = 0.02


def _agree_up_to_a_tie(got: list[int], ref: list[int], decoder: OnnxDecoder, ids: list[int]) -> None:
    k = next((i for i, (a, b) in enumerate(zip(got, ref)) if a != b), None)
    if k is None:
        return
    logits, _ = decoder.run(np.asarray([ids + ref[:k]]))
    last = logits[0, -1].astype(np.float64)                               # (V,)
    assert abs(last[got[k]] - last[ref[k]]) <= TIE, (k, got, ref, last[got[k]], last[ref[k]])


def test_greedy_tokens_match_the_check_session_and_stream(artifact):
    """The host graph's greedy tokens are model.onnx's (the check session's), up to a tie."""
    r = Runner(artifact)
    ids = r.encode(PROMPT)
    pieces = []
    g = r.generate(ids, 24, pieces.append)
    decoder = OnnxDecoder(artifact / "model.onnx")
    ref = [int(t) for t in decoder.generate(np.asarray([ids]), 24)[0]]
    _agree_up_to_a_tie(g.tokens, ref, decoder, ids)
    if g.tokens == ref[:len(g.tokens)]:
        if g.stopped == "eos":
            assert ref[len(g.tokens)] in r.eos
        else:
            assert g.tokens == ref
    assert g.tokens and "".join(pieces) == g.text == r.decode(g.tokens)
    # the same graph as the check session: the same tokens exactly
    std = Runner(artifact, graph="standard").generate(ids, 24)
    assert std.tokens == ref[:len(std.tokens)] and (std.stopped == "eos" or std.tokens == ref)
    assert g.prefill_tokens_per_s > 0 and g.prefill_s > 0


def test_max_new_tokens_and_context_cap(artifact):
    r = Runner(artifact)
    g = r.generate(r.encode(PROMPT), 1)
    assert len(g.tokens) <= 1 and g.decode_tokens_per_s is None
    r.context = len(r.encode(PROMPT)) + 2            # as if the model's context ended two tokens on
    g = r.generate(r.encode(PROMPT), 50)
    assert len(g.tokens) <= 2 and g.stopped in ("context", "eos")


def test_cli_streams_text_and_speeds(artifact):
    res = _cli(artifact, "--prompt", PROMPT, "-n", "24")
    assert res.returncode == 0, res.stderr
    want = generate(artifact, PROMPT, 24)
    assert res.stdout == want.text + "\n"
    assert "prefill" in res.stderr and "tok/s" in res.stderr


def test_cli_json_and_stdin_prompt(artifact):
    res = _cli(artifact, "--json", "-n", "24", stdin=PROMPT)
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    assert d["prompt"] == PROMPT and d["tokens"] == generate(artifact, PROMPT, 24).tokens
    assert d["prompt_tokens"] == len(d["prompt_ids"]) and d["stopped"] in ("eos", "max_new_tokens")


@pytest.mark.parametrize("args, message", [
    (["--max-new-tokens", "0"], "--max-new-tokens 0 is below 1"),
    (["--chat-template"], "has no chat template"),
    (["--runtime", "cuda"], "--runtime 'cuda' is not one of"),
])
def test_cli_bad_options(artifact, args, message):
    res = _cli(artifact, "--prompt", "x", *args)
    assert res.returncode == 2 and message in res.stderr and "fix:" in res.stderr and "Traceback" not in res.stderr


def test_cli_not_an_artifact(tmp_path):
    res = _cli(tmp_path, "--prompt", "x")
    assert res.returncode == 2 and "is not a dsedge artifact" in res.stderr and "Traceback" not in res.stderr


def test_jetson_example_runs_an_artifact_from_a_checkout(artifact, tmp_path):
    """examples/jetson/generate.py on a `dsedge build` folder (no dsedge_device/ in it): the runner
    comes from the checkout's src/dsedge/deploy/device, and prints what `dsedge run` does."""
    from pathlib import Path

    example = Path(__file__).parents[1] / "examples" / "jetson" / "generate.py"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([sys.executable, str(example), "--release", str(artifact), "--runtime", "onnxruntime",
                          "--max-tokens", "24", PROMPT], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    # the example runs model.onnx (the device runner's onnxruntime path): the host's run of the same graph
    r = Runner(artifact, graph="standard")
    host = r.generate(r.encode(PROMPT), 24)
    assert res.stdout == PROMPT + host.text + "\n" and "onnxruntime" in res.stderr
