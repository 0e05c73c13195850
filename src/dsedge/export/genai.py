"""genai_config.json: what onnxruntime-genai needs to open an artifact as its own model folder
(`onnxruntime_genai.Model(artifact)`), written from the config the build exported, and the
contract's tensor names (never guessed from a graph).

onnxruntime-genai's KV cache is per-layer `key` / `value` tensors of one head size. Multi-head
latent attention caches a latent and a rotated key of two different widths instead: no config
can describe that to it, so those artifacts get none (genai_config() returns None, and why).

BOS: onnxruntime-genai creates its tokenizer with add_special_tokens=false, so `encode` leaves
out the BOS that transformers' tokenizer (its tokenizer.json post-processor) puts in front. No
genai_config or tokenizer_config key changes that default; the caller turns it on:
`tokenizer.update_options(add_special_tokens="true")` (see README, onnxruntime-genai).
"""
from __future__ import annotations

import json
from pathlib import Path

GENAI_CONFIG = "genai_config.json"


def _ids(value) -> int | list[int] | None:
    if isinstance(value, list):
        return [int(v) for v in value] if len(value) > 1 else (int(value[0]) if value else None)
    return None if value is None else int(value)


def genai_config(raw_config: dict, contract, generation_config: dict | None = None,
                 onnx_file: str = "model.onnx") -> tuple[dict | None, str | None]:
    """-> (the genai_config dict, None) or (None, why there is none). raw_config: config.json;
    contract: the DecoderContract the graph was exported with."""
    kinds = [kind for kind, _, _ in contract.layout]
    if kinds != ["key", "value"] or contract.layout[0][1:] != contract.layout[1][1:]:
        return None, (f"onnxruntime-genai's KV cache is key / value of one head size; this model caches "
                      f"{' and '.join(f'{k} ({h} x {d})' for k, h, d in contract.layout)}")
    gen = generation_config or {}
    (_, kv_heads, head_size), _ = contract.layout
    eos = _ids(gen.get("eos_token_id", raw_config.get("eos_token_id")))
    bos = _ids(gen.get("bos_token_id", raw_config.get("bos_token_id")))
    pad = _ids(gen.get("pad_token_id", raw_config.get("pad_token_id")))
    if pad is None:   # onnxruntime-genai pads batches with it; transformers falls back to EOS too
        pad = eos[0] if isinstance(eos, list) else eos
    context = int(raw_config.get("max_position_embeddings") or 4096)
    (past_key, present_key), (past_value, present_value) = contract.cache_templates
    model = {
        # "decoder": onnxruntime-genai's generic decoder-only LLM; the graph holds the family's math
        "type": "decoder",
        "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad,
        "context_length": context, "vocab_size": int(contract.vocab_size),
        "decoder": {
            "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
            "filename": onnx_file,
            "head_size": int(head_size), "hidden_size": int(raw_config["hidden_size"]),
            "num_attention_heads": int(raw_config["num_attention_heads"]),
            "num_hidden_layers": int(contract.n_layers), "num_key_value_heads": int(kv_heads),
            "inputs": {**dict(zip(("input_ids", "attention_mask", "position_ids"), contract.input_names[:3])),
                       "past_key_names": past_key, "past_value_names": past_value},
            "outputs": {"logits": contract.output_names[0], "present_key_names": present_key,
                        "present_value_names": present_value},
        },
    }
    search = {"do_sample": False, "num_beams": 1, "num_return_sequences": 1, "max_length": context,
              "min_length": 0, "top_k": 1, "top_p": 1.0, "temperature": 1.0, "repetition_penalty": 1.0,
              "length_penalty": 1.0, "diversity_penalty": 0.0, "no_repeat_ngram_size": 0, "early_stopping": True,
              # the graph's present.* are past + new tokens long, not a preallocated shared buffer
              "past_present_share_buffer": False}
    return {"model": model, "search": search}, None


def write_genai_config(folder: Path, raw_config: dict, contract) -> str | None:
    """Write folder/genai_config.json (generation_config.json there, if any, gives the token ids).
    -> None, or why none was written."""
    folder = Path(folder)
    gen_file = folder / "generation_config.json"
    gen = json.loads(gen_file.read_text()) if gen_file.is_file() else None
    cfg, why = genai_config(raw_config, contract, gen)
    if cfg is not None:
        (folder / GENAI_CONFIG).write_text(json.dumps(cfg, indent=2) + "\n")
    return why
