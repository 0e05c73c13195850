"""Bad inputs through the real CLI: non-zero exit (2 for usage errors), one message naming the
problem and the fix, no traceback, no artifact left behind."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file


def _edit_config(**changes):
    def f(ck: Path, tmp: Path):
        cfg = json.loads((ck / "config.json").read_text())
        cfg.update(changes)
        (ck / "config.json").write_text(json.dumps(cfg))
    return f


def _edit_weights(fn):
    def f(ck: Path, tmp: Path):
        sd = load_file(ck / "model.safetensors")
        fn(sd)
        save_file(sd, ck / "model.safetensors")
    return f


def _truncate(ck, tmp):
    p = ck / "model.safetensors"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _nan(sd):
    sd["model.layers.1.mlp.up_proj.weight"][0, 0] = float("nan")


def _edit_header(fn):
    """Rewrite model.safetensors' JSON header with fn(header) (the tensor bytes unchanged)."""
    def f(ck: Path, tmp: Path):
        p = ck / "model.safetensors"
        data = p.read_bytes()
        n = int.from_bytes(data[:8], "little")
        header = fn(json.loads(data[8:8 + n]))
        raw = json.dumps(header).encode()
        p.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + n:])
    return f


def _first(h):
    return next(k for k in h if k != "__metadata__")


def _drop_offsets(h):
    h[_first(h)].pop("data_offsets")
    return h


def _overlap(h):
    names = [k for k in h if k != "__metadata__"]
    a, b = sorted(names, key=lambda k: h[k]["data_offsets"][0])[:2]
    size = h[b]["data_offsets"][1] - h[b]["data_offsets"][0]
    h[b]["data_offsets"] = [h[a]["data_offsets"][0], h[a]["data_offsets"][0] + size]
    return h


def _lying_offsets(h):
    k = _first(h)
    h[k]["data_offsets"][1] -= 2
    return h


def _split_without_index(ck, tmp):
    sd = load_file(ck / "model.safetensors")
    keys = sorted(sd)
    save_file({k: sd[k] for k in keys[::2]}, ck / "part-a.safetensors")
    save_file({k: sd[k] for k in keys[1::2]}, ck / "part-b.safetensors")
    (ck / "model.safetensors").unlink()


def _write_index(weight_map):
    def f(ck, tmp):
        (ck / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return f


def _pickle_only(ck, tmp):
    sd = load_file(ck / "model.safetensors")
    torch.save(sd, ck / "pytorch_model.bin")
    (ck / "model.safetensors").unlink()


def _int_weights(sd):
    sd["model.layers.0.mlp.gate_proj.weight"] = sd["model.layers.0.mlp.gate_proj.weight"].to(torch.int32)


def _target_file(**changes):
    def f(ck, tmp):
        import yaml
        from dsedge.targets import find_target
        data = find_target("orin").to_dict()
        data.update(name="mine", aliases=[], **changes)
        (tmp / "targets").mkdir()
        (tmp / "targets" / "mine.yaml").write_text(yaml.safe_dump(data))
    return f


def _tmpfs(size, readonly=False):
    """A small tmpfs under the scratch folder (root is available in CI and here)."""
    def f(ck, tmp):
        mnt = tmp / "disk"
        mnt.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], check=True)
        _MOUNTS.append(mnt)
        if readonly:
            subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
    return f


_MOUNTS: list[Path] = []


def _write(name, text):
    def f(ck, tmp):
        (tmp / name).write_text(text)
    return f


# (id, args with {ck} = corrupted checkpoint copy / {tmp} = scratch folder, corruption, message fragment)
CASES = [
    ("missing-folder", ["--model", "{tmp}/nope"], None, "checkpoint folder {tmp}/nope does not exist"),
    ("model-is-file", ["--model", "{ck}/config.json"], None, "is a file, not a checkpoint folder"),
    ("no-config", ["--model", "{ck}"], lambda ck, t: (ck / "config.json").unlink(), "has no config.json"),
    ("config-not-json", ["--model", "{ck}"], lambda ck, t: (ck / "config.json").write_text("{oops"), "is not valid JSON"),
    ("unsupported-arch", ["--model", "{ck}"], _edit_config(architectures=["DeepseekV3ForCausalLM"]),
     "architecture DeepseekV3ForCausalLM (DeepSeek-V3 / R1 (MLA + MoE with sigmoid routing)) is not supported yet"),
    ("unknown-arch", ["--model", "{ck}"], _edit_config(architectures=["GPT2LMHeadModel"]),
     "LlamaForCausalLM, Qwen2ForCausalLM"),
    ("truncated-safetensors", ["--model", "{ck}"], _truncate, "is truncated"),
    ("shape-disagrees", ["--model", "{ck}"], _edit_config(intermediate_size=512), "config.json implies"),
    ("missing-tensor", ["--model", "{ck}"], _edit_weights(lambda sd: sd.pop("model.layers.2.self_attn.o_proj.weight")),
     "tensor model.layers.2.self_attn.o_proj.weight is missing"),
    ("nan-weights", ["--model", "{ck}"], _edit_weights(_nan), "weight model.layers.1.mlp.up_proj.weight contains NaN"),
    ("pickle-only", ["--model", "{ck}"], _pickle_only, "--allow-pickle"),
    ("missing-tokenizer", ["--model", "{ck}"], lambda ck, t: (ck / "tokenizer.json").unlink(), "has no tokenizer"),
    ("group-not-dividing", ["--method", "gptq", "--group-size", "512"], None,
     "--group-size 512 does not divide in_features 256"),
    ("bits-vs-method", ["--method", "int8", "--bits", "4"], None, "--bits 4 is not supported by method int8"),
    ("unknown-method", ["--method", "magic"], None, "unknown method 'magic'"),
    ("unknown-target", ["--target", "mars"], None, "unknown target 'mars'"),
    ("empty-eval", ["--eval", "{tmp}/empty.txt"], _write("empty.txt", ""), "is empty"),
    ("short-eval", ["--eval", "{tmp}/short.txt"], _write("short.txt", "the cat"), "fewer than one 128-token window"),
    ("missing-eval", ["--eval", "{tmp}/none.txt"], None, "does not exist"),
    ("eval-window-too-long", ["--eval-window", "4096"], None,
     "--eval-window 4096 is longer than the model's max_position_embeddings (512)"),
    ("eval-windows-zero", ["--eval-windows", "0"], None, "--eval-windows 0 must be at least 1"),
    ("kv-cache-unknown", ["--kv-cache", "fp8"], None, "--kv-cache fp8 is not one of fp16, int8"),
    ("kv-cache-truncated", ["--kv-cache", "int8", "--check", "truncated"], None,
     "--kv-cache int8 calibrates the cache on the whole model in PyTorch: --check truncated"),
    ("hub-id-offline", ["--model", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"], None,
     "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B is not a local folder and HF_HUB_OFFLINE is set"),
    ("dtype-disagrees", ["--model", "{ck}"], _edit_weights(_int_weights),
     "tensor model.layers.0.mlp.gate_proj.weight has dtype I32"),
    ("target-unknown-key", ["--targets-dir", "{tmp}/targets", "--target", "mine"], _target_file(colour="red"),
     "mine.yaml: colour: unknown key"),
    ("target-wrong-type", ["--targets-dir", "{tmp}/targets", "--target", "mine"],
     _target_file(memory={"total_gb": "lots", "usable_gb": 1, "bandwidth_gbs": 1}), "memory.total_gb"),
    ("memory-planner-refuses", ["--max-memory", "0.5"], None, "this build needs about"),
    ("disk-full", ["-o", "{tmp}/disk/art"], _tmpfs("600k"), "no space left on the disk of {tmp}/disk"),
    ("output-not-writable", ["-o", "{tmp}/disk/art"], _tmpfs("1m", readonly=True), "cannot write into {tmp}/disk"),
    ("output-is-file", ["-o", "{tmp}/file"], _write("file", "x"), "already exists and is not a folder"),
    # config.json types and ranges, checked when the checkpoint is opened
    ("config-layers-string", ["--model", "{ck}"], _edit_config(num_hidden_layers="4"),
     "num_hidden_layers is '4', not a whole number >= 1"),
    ("config-zero-layers", ["--model", "{ck}"], _edit_config(num_hidden_layers=0), "num_hidden_layers is 0"),
    ("config-heads-kv", ["--model", "{ck}"], _edit_config(num_key_value_heads=3),
     "num_attention_heads 8 is not a multiple of num_key_value_heads 3"),
    ("config-eps-negative", ["--model", "{ck}"], _edit_config(rms_norm_eps=-1e-6), "rms_norm_eps is -1e-06"),
    # safetensors headers, checked before any tensor is read
    ("header-not-object", ["--model", "{ck}"], _edit_header(lambda h: list(h)), "the header is a JSON list"),
    ("header-no-offsets", ["--model", "{ck}"], _edit_header(_drop_offsets), "data_offsets None is not [begin, end]"),
    ("header-overlap", ["--model", "{ck}"], _edit_header(_overlap), "overlap"),
    ("header-lies", ["--model", "{ck}"], _edit_header(_lying_offsets), "span"),
    ("index-map-list", ["--model", "{ck}"], _write_index([["a", "model.safetensors"]]),
     "weight_map is not an object of tensor name -> shard file"),
    ("index-escapes", ["--model", "{ck}"], _write_index({"model.embed_tokens.weight": "../model.safetensors"}),
     "shard '../model.safetensors' is not a file name"),
    ("shards-without-index", ["--model", "{ck}"], _split_without_index, "but no model.safetensors.index.json"),
    ("tokenizer-corrupt", ["--model", "{ck}"], lambda ck, t: (ck / "tokenizer.json").write_text("{oops"),
     "cannot be loaded"),
]


@pytest.fixture
def unmount():
    yield
    while _MOUNTS:
        subprocess.run(["umount", "-l", str(_MOUNTS.pop())], check=False)


def test_at_least_25_bad_inputs_are_covered():
    assert len(CASES) >= 25


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, ckpt_copy, tmp_path, unmount):
    name, args, corrupt, fragment = case
    if corrupt and corrupt.__qualname__.startswith("_tmpfs") and os.geteuid() != 0:
        pytest.skip("mounting a tmpfs for the disk cases needs root (CI runs as root)")
    ck = ckpt_copy()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    if corrupt:
        corrupt(ck, scratch)
    fmt = lambda s: s.format(ck=ck, tmp=scratch)
    args = [fmt(a) for a in args]
    if "--model" not in args:
        args += ["--model", str(ck)]
    out = Path(args[args.index("-o") + 1]) if "-o" in args else tmp_path / "artifact"
    if "-o" not in args:
        args += ["-o", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "dsedge", "build", *args, "--no-latency"], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 2, r.stderr
    assert fmt(fragment) in " ".join(r.stderr.split()), r.stderr
    assert "fix:" in r.stderr and "Traceback" not in r.stderr
    if name == "output-is-file":
        assert out.read_text() == "x"  # the user's file is left alone
    else:
        assert not out.exists()
    for folder in (tmp_path, scratch, scratch / "disk"):
        assert not list(folder.glob(".*partial*")) and not list(folder.glob(".*check-*")), "temporary folder left"


def test_debug_shows_the_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "dsedge", "--debug", "build", "--model", str(tmp_path / "nope")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" in r.stderr


def test_usage_error_from_the_parser_exits_2():
    r = subprocess.run([sys.executable, "-m", "dsedge", "build", "--bits", "four"], capture_output=True, text=True)
    assert r.returncode == 2
