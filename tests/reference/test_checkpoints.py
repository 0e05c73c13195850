"""The shipped reference checkpoints load with plain transformers and match training.json."""
import json

import pytest
import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from dsedge import reference
from dsedge.reference import corpus, train

NAMES = sorted(reference.REFERENCE_MODELS)


@pytest.fixture(scope="module", params=NAMES)
def ckpt(request):
    """(name, folder, fp32 model on bf16 weights, tokenizer, training.json)."""
    folder = reference.checkpoint_path(request.param)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    info = json.loads((folder / "training.json").read_text())
    return request.param, folder, model, tok, info


def test_files_and_config(ckpt):
    name, folder, model, _, _ = ckpt
    for f in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
              "generation_config.json", "training.json"):
        assert (folder / f).is_file(), f
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["architectures"] == [reference.REFERENCE_MODELS[name]]
    assert type(model).__name__ == reference.REFERENCE_MODELS[name]
    assert cfg["dtype"] == "bfloat16" and cfg["tie_word_embeddings"] is False
    assert cfg["vocab_size"] % 128 == 0
    assert (cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]) == (256, 768, 4)
    if cfg["architectures"] == ["DeepseekV2ForCausalLM"]:   # MLA: one latent, all 8 heads read it; MoE after layer 0
        assert (cfg["num_attention_heads"], cfg["kv_lora_rank"], cfg["q_lora_rank"]) == (8, 128, None)
        assert (cfg["n_routed_experts"], cfg["num_experts_per_tok"], cfg["n_shared_experts"],
                cfg["first_k_dense_replace"]) == (8, 2, 2, 1)
    else:
        assert (cfg["num_attention_heads"], cfg["num_key_value_heads"]) == (8, 2)
    assert (folder / "model.safetensors").stat().st_size < 10 * 2**20
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()


def test_weights_are_bf16(ckpt):
    folder = ckpt[1]
    from safetensors import safe_open

    with safe_open(folder / "model.safetensors", "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}


def test_linear_layout(ckpt):
    name, _, model, _, _ = ckpt
    linears = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert len(linears) == 4 * 7 + 1  # q k v o gate up down per layer + lm_head
    assert all(m.in_features % 128 == 0 for m in linears.values())
    has_bias = {n.rsplit(".", 1)[-1] for n, m in linears.items() if m.bias is not None}
    assert has_bias == ({"q_proj", "k_proj", "v_proj"} if name == "qwen2-tiny" else set())


def test_tokenizer(ckpt):
    _, folder, model, tok, _ = ckpt
    assert isinstance(tok, PreTrainedTokenizerFast)
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<s>", "</s>", "<pad>")
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (0, 1, 3)
    assert len(tok) <= model.config.vocab_size
    line = "seven plus five equals twelve . ganu lives in ruzo ."
    ids = tok(line)["input_ids"]
    assert ids[0] == tok.bos_token_id and len(ids) == 1 + len(line.split())  # one token per word
    assert ids == Tokenizer.from_file(str(folder / "tokenizer.json")).encode(line).ids
    assert tok.decode(ids, skip_special_tokens=True).strip() == line
    # Both checkpoints give corpus words the same ids (word-level and byte-level BPE alike).
    vocab = tok.get_vocab()
    assert [vocab.get("Ġ" + w, vocab.get(w)) for w in corpus.vocabulary()] == list(
        range(4, 4 + len(corpus.vocabulary())))


def test_eval_ppl_matches_training_json(ckpt):
    _, _, model, tok, info = ckpt
    ppl = train.eval_perplexity(model, tok, train.read_lines(reference.eval_text_path()))
    assert ppl == pytest.approx(info["eval_ppl"], rel=0.01)
    assert ppl < model.config.vocab_size / 20  # far better than a uniform guess


def test_task_accuracy(ckpt):
    _, _, model, tok, info = ckpt
    examples = [json.loads(l) for l in reference.task_path().read_text().splitlines()]
    acc = train.task_accuracy(model, tok, examples)
    assert acc == pytest.approx(info["task_accuracy"], abs=0.02)
    assert acc > 0.8
