"""`dsedge build --kv-cache int8` end to end on the reference checkpoint: the report's cache
figures (teacher-forced decoding through the INT8 cache against an FP16 cache on the same
weights, short and long context), the artifact's record of it; the same measurement on an
FP16-cache graph (only FP16 activations differ) as the control it must clearly exceed."""
from __future__ import annotations

import json
import subprocess
import sys

import onnx
import pytest
import torch

from dsedge import reference
from dsedge.check import OnnxDecoder
from dsedge.check.accuracy import load_eval
from dsedge.check.kv_cache import kv_cache_figures
from dsedge.load import open_checkpoint
from dsedge.quantize import Int4WeightOnlyConfig


@pytest.fixture(scope="module")
def int8_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("kv") / "art"
    proc = subprocess.run([sys.executable, "-m", "dsedge", "build", "--kv-cache", "int8", "--no-latency", "-o", str(out),
                           "--json"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads((out / "report.json").read_text())


def test_report_has_the_int8_cache_figures_at_short_and_long_context(int8_build):
    out, r = int8_build
    kv = r["kv_cache"]
    assert kv["dtype"] == "int8" and kv["tensors"] == 2 * r["model"]["layers"]
    assert kv["calibration"].startswith("reference corpus")
    short, long = kv["short"], kv["long"]
    assert short["window_tokens"] == r["eval"]["window_tokens"] == 128
    cfg = json.loads((out / "config.json").read_text())
    assert long["window_tokens"] == cfg["max_position_embeddings"] > short["window_tokens"]
    for f in (short, long):
        assert 0 < f["kl"] < 0.05 and 0.9 < f["top1_agreement"] <= 1
        assert f["ppl_change_pct"] == pytest.approx(100 * (f["perplexity"] / f["fp16_cache_perplexity"] - 1), abs=1e-3)
    m = onnx.load(str(out / "model.onnx"), load_external_data=False)
    assert {p.key: p.value for p in m.metadata_props}["dsedge.kv_cache"] == "int8"
    assert not (out / "genai_config.json").exists()          # onnxruntime-genai has no INT8 cache type
    assert r["host_plan"]  # planned as usual


def test_fp16_cache_control_is_far_below_the_int8_cache(int8_build, exported):
    _, r = int8_build
    path, model, _ = exported(reference.DEFAULT_MODEL, Int4WeightOnlyConfig(group_size=128), torch.float16)
    tok = open_checkpoint(reference.checkpoint_path(reference.DEFAULT_MODEL)).tokenizer()
    data = load_eval(tok, reference.eval_text_path(), separator="eos")
    control = kv_cache_figures(OnnxDecoder(path), model, data, tok)
    assert control["short"]["windows"] == r["kv_cache"]["short"]["windows"]
    assert control["short"]["kl"] < r["kv_cache"]["short"]["kl"] / 5
    assert control["long"]["kl"] < r["kv_cache"]["long"]["kl"] / 5

