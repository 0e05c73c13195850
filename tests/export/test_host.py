"""The host graph (dsedge/export/host.py) against the standard graph it is derived from, in real
onnxruntime: same weights repacked, so the logits agree to FP16 activation rounding and greedy
tokens are equal except where the standard graph's own top two are tied within that rounding."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from dsedge.cache import StageCache
from dsedge.deploy.device.runtime import HostGraphDecoder, OrtDecoder
from dsedge.errors import UsageError
from dsedge.export.host import write_host_graph
from dsedge.host_graph import LEVELS, Unhostable, host_file, host_graph
from dsedge.deploy.host import open_on_host

TIE = 0.05        # logits: the standard graph's FP16 activations round about this much at these scales


def agree(folder, graph, prompt=20, steps=24, capacity=256):
    """Prefill + greedy steps through both; -> (max |logit difference|, steps whose greedy token agreed)."""
    std = OrtDecoder(folder, threads=1)
    host = HostGraphDecoder(graph, threads=1, capacity=capacity)
    ids = np.arange(prompt, dtype=np.int64)[None] * 37 % 200 + 4
    (a, pa), (b, pb) = std.run(ids), host.run(ids)
    worst, same = 0.0, 0
    for n in range(steps):     # both fed the standard graph's greedy token
        worst = max(worst, float(np.abs(a - b).max()))
        top2 = np.sort(a)[-2:]
        if int(a.argmax()) == int(b.argmax()):
            same += 1
        else:
            assert top2[1] - top2[0] < TIE, f"greedy tokens differ at step {n} with a margin of {top2[1] - top2[0]}"
        tok = np.array([[int(a.argmax())]])
        (a, pa), (b, pb) = std.run(tok, pa), host.run(tok, pb)
    return worst, same


@pytest.mark.parametrize("name,method", [("qwen2-tiny", "rtn"), ("llama-tiny", "rtn"), ("qwen2-tiny", "int8"),
                                         ("qwen2-tiny", "fp16")])
def test_host_graph_matches_the_standard_graph(built, tmp_path, name, method):
    res = built(name, method)
    meta = write_host_graph(res.path, tmp_path)
    worst, n = agree(res.path, tmp_path / host_file(1))
    assert worst < 0.05 and n >= 20, (worst, n)
    ops = meta["ops"]
    assert ops["GroupQueryAttention"] == meta["layers"] and ops["SkipSimplifiedLayerNormalization"] == 2 * meta["layers"]
    if method != "fp16":     # q|k|v packed and gate|up packed: 4 MatMulNBits a layer
        assert ops["MatMulNBits"] == 4 * meta["layers"], ops


def test_qwen3_norms_outside_attention(tmp_path):
    """qwen3-tiny: the per-head q / k RMSNorms (GroupQueryAttention's own inputs for them run on CUDA only)."""
    import dsedge
    from dsedge import reference

    res = dsedge.build(reference.checkpoint_path("qwen3-tiny"), target="orin", quant=dsedge.config_from_options(bits=4),
                       output=tmp_path / "art", latency=False, check_scope="truncated")
    write_host_graph(res.path, tmp_path)
    worst, n = agree(res.path, tmp_path / host_file(1))
    assert worst < 0.05 and n >= 20, (worst, n)


def test_cache_grows_past_its_capacity(built, tmp_path):
    """A 4-token buffer grown by doubling while the sequence goes on gives the logits of a big one."""
    res = built("qwen2-tiny", "rtn")
    write_host_graph(res.path, tmp_path)
    ids = np.arange(10, dtype=np.int64)[None] + 4
    small, big = (HostGraphDecoder(tmp_path / host_file(1), threads=1, capacity=c) for c in (4, 512))
    (a, pa), (b, pb) = small.run(ids), big.run(ids)
    for _ in range(12):
        np.testing.assert_allclose(a, b, atol=1e-4)
        tok = np.array([[int(a.argmax())]])
        (a, pa), (b, pb) = small.run(tok, pa), big.run(tok, pb)
    assert small.capacity >= 22 and big.capacity == 512


def test_levels_differ_only_in_the_attribute(built, tmp_path):
    import onnx

    res = built("qwen2-tiny", "rtn")
    write_host_graph(res.path, tmp_path)
    levels = {}
    for lv in LEVELS:
        m = onnx.load(str(tmp_path / host_file(lv)), load_external_data=False)
        levels[lv] = {a.i for n in m.graph.node if n.op_type == "MatMulNBits" for a in n.attribute
                      if a.name == "accuracy_level"}
    assert levels == {lv: {lv} for lv in LEVELS}


def test_cached_and_verified(built, tmp_path):
    """Built once into the stage cache; a changed cache file is dropped and rebuilt; an artifact
    whose model.onnx does not match its manifest is refused before a byte of it is read."""
    res = built("qwen2-tiny", "rtn")
    cache = StageCache(root=tmp_path / "cache")
    first = host_graph(res.path, 1, cache)
    assert host_graph(res.path, 4, cache).parent == first.parent
    data = first.parent / "model.host.onnx.data"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    again = host_graph(res.path, 1, cache)
    assert any("failed verification" in n for n in cache.notes), cache.notes
    worst, _ = agree(res.path, again, steps=4)
    assert worst < 0.05
    art = tmp_path / "art"
    shutil.copytree(res.path, art)
    with open(art / "model.onnx", "r+b") as f:
        f.seek(100)
        f.write(b"\0")
    with pytest.raises(UsageError, match="does not match the sha256"):
        host_graph(art, 1, cache)


def test_the_decoding_process_imports_neither_torch_nor_onnx(built, tmp_path):
    """Opening the host runner (the graph written once into the cache, then found there) leaves
    torch and onnx out of the process: `dsedge bench`'s peak RSS is the runtime's and the model's
    (importing dsedge.export alone costs ~260 MB)."""
    res = built("qwen2-tiny", "rtn")
    env = {**os.environ, "DSEDGE_CACHE_DIR": str(tmp_path / "cache")}
    code = ("import sys; from pathlib import Path; from dsedge.deploy.host import open_on_host; "
            "dec, graph = open_on_host(Path(sys.argv[1])); assert graph.startswith('host graph'), graph; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'onnx', 'transformers', 'onnx_ir'}))")
    for _ in range(2):                                   # written into the cache, then read from it
        proc = subprocess.run([sys.executable, "-c", code, str(res.path)], capture_output=True, text=True, env=env)
        assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_mla_keeps_the_standard_graph(built, tmp_path):
    """DeepSeek-V2 (MLA + MoE): no host form; auto says why and runs model.onnx, --graph host refuses."""
    import dsedge
    from dsedge import reference

    res = dsedge.build(reference.checkpoint_path("deepseek-v2-tiny"), target="orin",
                       quant=dsedge.config_from_options(bits=4), output=tmp_path / "art", latency=False,
                       check_scope="truncated")
    with pytest.raises(Unhostable, match="mla"):
        write_host_graph(res.path, tmp_path / "host")
    dec, graph = open_on_host(res.path)
    assert isinstance(dec, OrtDecoder) and "no host graph" in graph
    proc = subprocess.run([sys.executable, "-m", "dsedge", "bench", str(res.path), "--graph", "host", "--runs", "1",
                           "--warmup", "0", "--no-write"], capture_output=True, text=True)
    assert proc.returncode == 2 and "has no host graph" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_bench_and_run_use_it(built, tmp_path, monkeypatch):
    """`dsedge bench` and `dsedge run` on this host run the host graph by default and say so."""
    monkeypatch.setenv("DSEDGE_CACHE_DIR", str(tmp_path / "cache"))
    res = built("qwen2-tiny", "rtn")
    proc = subprocess.run([sys.executable, "-m", "dsedge", "bench", str(res.path), "--runs", "1", "--warmup", "0",
                           "--decode-tokens", "4", "--prompt-tokens", "8", "--no-write", "--json"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["graph"].startswith("host graph")
    outs = {}
    for graph in ("auto", "standard"):
        proc = subprocess.run([sys.executable, "-m", "dsedge", "run", str(res.path), "-p", "the cat", "-n", "6",
                               "--json", "--graph", graph], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        outs[graph] = json.loads(proc.stdout)
    assert outs["auto"]["graph"].startswith("host graph") and outs["standard"]["graph"].startswith("model.onnx")
    assert outs["auto"]["tokens"] == outs["standard"]["tokens"]
