"""genai_config.json: onnxruntime-genai opens a built artifact as its model folder and decodes
the same greedy tokens as dsedge's own onnxruntime sessions; its tokenizer gives transformers'
ids (BOS included) once add_special_tokens is on."""
from __future__ import annotations

import json

import numpy as np
import pytest
from transformers import AutoTokenizer

from dsedge.check.session import OnnxDecoder
from dsedge.export.contract import DecoderContract
from dsedge.export.genai import genai_config

og = pytest.importorskip("onnxruntime_genai")

# Led by a space: the reference tokenizers' ByteLevel pre-tokenizer adds one in front of the text
# (add_prefix_space), which onnxruntime-extensions does not implement; with the space already
# there both tokenizers split the text the same way (see README, onnxruntime-genai).
PROMPT = " Once upon a time"


@pytest.fixture(scope="module")
def artifact(built):
    return built("qwen2-tiny", "rtn").path


def test_the_artifact_lists_its_genai_config(artifact, built):
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert "genai_config.json" in manifest["files"]
    cfg = json.loads((artifact / "genai_config.json").read_text())
    model_cfg = json.loads((artifact / "config.json").read_text())
    dec = cfg["model"]["decoder"]
    assert dec["num_hidden_layers"] == model_cfg["num_hidden_layers"]
    assert dec["num_key_value_heads"] == model_cfg["num_key_value_heads"]
    assert cfg["model"]["eos_token_id"] == model_cfg["eos_token_id"]
    assert built("qwen2-tiny", "rtn").report["onnxruntime_genai"] == {"genai_config": "genai_config.json"}


def test_tokenizer_adds_bos_like_transformers(artifact):
    hf = AutoTokenizer.from_pretrained(str(artifact))(PROMPT).input_ids
    tok = og.Tokenizer(og.Model(str(artifact)))
    assert [int(i) for i in tok.encode(PROMPT)] == hf[1:]      # onnxruntime-genai's default: no BOS
    tok.update_options(add_special_tokens="true")
    assert [int(i) for i in tok.encode(PROMPT)] == hf and hf[0] == tok.bos_token_id


def test_greedy_tokens_match_dsedge(built, ref_name):
    """Each dense reference family (the suite's shared INT4 RTN builds), from transformers' ids:
    onnxruntime-genai's tokenizer reads BPE tokenizers only, and one tiny reference has a
    word-level one (the test above covers the tokenizer)."""
    artifact = built(ref_name, "rtn").path
    model = og.Model(str(artifact))
    ids = AutoTokenizer.from_pretrained(str(artifact))(PROMPT).input_ids
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + 24, do_sample=False)
    gen = og.Generator(model, params)
    gen.append_tokens(ids)
    ours = []
    while not gen.is_done():
        gen.generate_next_token()
        ours.append(int(gen.get_next_tokens()[0]))
    eos = json.loads((artifact / "generation_config.json").read_text())["eos_token_id"]
    ref = [int(t) for t in OnnxDecoder(artifact / "model.onnx").generate(np.asarray([ids]), len(ours))[0]]
    if eos in ref:                                 # onnxruntime-genai stops at EOS (and emits it)
        ref = ref[:ref.index(eos) + 1]
    assert len(ours) >= 2 and ours == ref          # at least one token from a cached decode step


def test_no_genai_config_for_a_latent_cache():
    """Multi-head latent attention: a latent and a rotated key of other widths, not key / value."""
    contract = DecoderContract(2, (("compressed_kv", 1, 64), ("k_rope", 1, 16)), 100)
    cfg, why = genai_config({"hidden_size": 64, "num_attention_heads": 4}, contract)
    assert cfg is None and "compressed_kv (1 x 64)" in why
