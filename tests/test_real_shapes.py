"""Builds at the real shapes of published DeepSeek checkpoints: random weights from the published
config.json (src/dsedge/archs/configs/), cut to 2 layers (and 4 routed experts, and an 8192-word
vocabulary, so that three builds fit the suite's time). Full-size and every-configuration runs
are benchmarks/build_time.py. Each build is the real CLI or API: it exits 0 only when the ONNX
matches PyTorch within tolerance, greedy decoding agrees and the static TensorRT check passes."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dsedge.reference.synthetic import write_checkpoint
from tests.test_build import check_artifact

pytestmark = pytest.mark.slow


def test_v2_lite_shape_builds_with_the_readme_command(tmp_path):
    """`dsedge build --target orin --bits 4` on DeepSeek-V2-Lite's configuration: its dense layer's
    down_proj (in_features 10944 = 85.5 x 128) is stored at group 64, and the report says so."""
    ckpt = write_checkpoint("deepseek-v2-lite", tmp_path / "v2lite", layers=2, experts=4, vocab=8192)
    out = tmp_path / "int4"
    proc = subprocess.run([sys.executable, "-m", "dsedge", "build", "--model", str(ckpt), "--target", "orin",
                           "--bits", "4", "-o", str(out), "--no-latency"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads((out / "report.json").read_text())
    assert r["quantization"]["layer_fallbacks"] == [
        {"name": "model.layers.0.mlp.down_proj", "bits": 4, "group_size": 64,
         "why": "in_features 10944 is not a multiple of 128: group 64, the largest power of two down to 64 that divides it"}]
    assert json.loads((out / "manifest.json").read_text())["layer_fallbacks"] == r["quantization"]["layer_fallbacks"]
    assert "1 linear at INT4 g64" in proc.stdout
    layers = {row["name"]: row for row in r["layers"]}
    assert layers["model.layers.0.mlp.down_proj"]["group_size"] == 64
    assert layers["model.layers.0.mlp.up_proj"]["group_size"] == 128
    assert r["greedy_generation"]["agrees"] and r["tensorrt_compat"]["ok"]


def test_tied_embeddings_build(tmp_path):
    """A checkpoint without lm_head.weight (tie_word_embeddings, a valid Hugging Face layout) at
    R1-Distill-Qwen-1.5B's dimensions."""
    import dsedge

    ckpt = write_checkpoint("r1-distill-qwen-1.5b", tmp_path / "tied", layers=2, vocab=8192, tie=True)
    res = dsedge.build(ckpt, target="orin", quant=dsedge.config_from_options(bits=8), output=tmp_path / "int8",
                       latency=False)
    check_artifact(res, "int8")
    assert res.report["onnx"]["kl"] < 1e-3
    host_agrees(res.path, tmp_path / "host")     # the head read from the embedding


def test_linear_rope_scaling_shape_builds(tmp_path):
    """deepseek-coder-1.3b: Llama layout, multi-head (16 KV heads), linear rope scaling x4."""
    import dsedge

    ckpt = write_checkpoint("deepseek-coder-1.3b", tmp_path / "coder", layers=2, vocab=8192)
    res = dsedge.build(ckpt, target="orin", quant=dsedge.config_from_options(bits=4), output=tmp_path / "int4",
                       latency=False)
    check_artifact(res, "rtn")
    assert not res.report["quantization"]["layer_fallbacks"]
    host_agrees(res.path, tmp_path / "host")     # rotary tables with linear scaling, 16 KV heads


def host_agrees(folder, out):
    """The host graph (export/host.py) of a real-shape artifact against its model.onnx."""
    from dsedge.export.host import write_host_graph
    from dsedge.host_graph import host_file
    from tests.export.test_host import agree

    out.mkdir()
    write_host_graph(folder, out)
    worst, same = agree(folder, out / host_file(1), steps=12)
    assert worst < 0.05 and same >= 10, (worst, same)


def test_chat_template_eval_on_an_r1_distill_shape(tmp_path):
    """`--chat-template` on an R1-Distill-Qwen-1.5B-shaped folder (its tokenizer carries the R1 turn
    structure): the eval text is measured as R1 prompts, and the report says so. (The template is
    the tokenizer's; the 1.5B shape keeps this 5 x cheaper than the 7B's.)"""
    ckpt = write_checkpoint("r1-distill-qwen-1.5b", tmp_path / "r1", layers=2, vocab=8192)
    text = tmp_path / "eval.txt"
    text.write_text("\n".join(f"the {w} sat on the mat and looked at the {v}" for w in ("cat", "dog", "owl")
                              for v in ("sun", "moon", "rain", "snow", "sea")) * 4)
    out = tmp_path / "int8"
    proc = subprocess.run([sys.executable, "-m", "dsedge", "build", "--model", str(ckpt), "--bits", "8",
                           "--eval", str(text), "--chat-template", "-o", str(out), "--no-latency"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads((out / "report.json").read_text())
    assert r["eval"]["line_separator"] == "chat" and r["eval"]["windows"] >= 1


def test_yarn_qwen3_shape_host_graph(tmp_path):
    """R1-0528-Qwen3-8B's configuration (yarn rope with its attention factor, q / k norms, head_dim
    128), one layer: the host graph's rotary tables and norms against model.onnx."""
    import dsedge

    ckpt = write_checkpoint("r1-0528-qwen3-8b", tmp_path / "q3", layers=1, vocab=2048)
    res = dsedge.build(ckpt, target="orin", quant=dsedge.config_from_options(bits=4), output=tmp_path / "int4",
                       latency=False)
    check_artifact(res, "rtn")
    host_agrees(res.path, tmp_path / "host")


def test_fit_on_an_r1_distill_qwen_shape(tmp_path):
    """`dsedge build --fit --fit-bits B` at R1-Distill-Qwen-1.5B's shapes (2 layers, 8192 words): a
    budget between the cheapest mix and FP16 gives a mix of INT4 and INT8 linears within it, the
    embedding INT8 (gathered as INT8), and a graph the TensorRT check passes."""
    ckpt = write_checkpoint("r1-distill-qwen-1.5b", tmp_path / "q15", layers=2, vocab=8192)
    out = tmp_path / "fit"
    proc = subprocess.run([sys.executable, "-m", "dsedge", "build", "--model", str(ckpt), "--fit", "--fit-bits", "5",
                           "-o", str(out), "--no-latency", "--eval-windows", "4"], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads((out / "report.json").read_text())
    fit = r["fit"]
    assert fit["weight_bytes"] <= fit["budget"]["bytes"] and fit["budget"]["binding"] == "--fit-bits"
    choice = {u["name"]: u["choice"] for u in fit["units"]}
    assert {"int4", "int8"} <= set(choice.values())
    assert choice["model.embed_tokens"] == "int8"
    import onnx

    m = onnx.load(str(out / "model.onnx"), load_external_data=False)
    inits = {i.name: i for i in m.graph.initializer}
    gathers = [n for n in m.graph.node if n.op_type == "Gather" and n.input[0] in inits
               and inits[n.input[0]].data_type == onnx.TensorProto.INT8]
    assert len(gathers) == 1
    assert r["tensorrt_compat"]["ok"] and r["greedy_generation"]["agrees"]
