"""config.json alone, for the planner: a checkpoint folder, a config.json path, or a hub id
(only config.json is fetched, and only when online)."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .. import reference
from ..errors import CheckpointError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")   # org/name on the Hugging Face Hub


def read_config(model: str | os.PathLike | None) -> dict:
    """The parsed config.json of `model` (None: the bundled reference checkpoint)."""
    if model is None:
        path = reference.checkpoint_path() / "config.json"
    else:
        p = Path(model).expanduser()
        path = p / "config.json" if p.is_dir() else p
        if not p.exists():
            path = _download_config(str(model))
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist", "pass a checkpoint folder that holds config.json, or the file")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e})", "restore the checkpoint's config.json") from None
    if not isinstance(config, dict) or not config.get("architectures"):
        raise CheckpointError(f"{path} has no `architectures` list", "use the config.json of a Hugging Face checkpoint")
    check_config(config, path)
    return config


def _download_config(repo_id: str) -> Path:
    if not HUB_ID.match(repo_id):
        raise CheckpointError(f"{repo_id} does not exist", "pass a checkpoint folder, its config.json, or a hub id")
    fix = f"download it where the Hub is reachable (`hf download {repo_id} config.json`) and pass the file"
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        raise CheckpointError(f"{repo_id} is not a local path and HF_HUB_OFFLINE is set", fix)
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id, "config.json", etag_timeout=10))
    except Exception as e:  # noqa: BLE001 - any network / auth failure gets the same advice
        raise CheckpointError(f"cannot fetch config.json of {repo_id} ({type(e).__name__})", fix) from None


# config.json fields every stage relies on: (key, required, lowest value). The others pass as they are.
_POSITIVE = (("num_hidden_layers", True, 1), ("hidden_size", True, 1), ("num_attention_heads", True, 1),
             ("vocab_size", True, 1), ("intermediate_size", False, 1), ("num_key_value_heads", False, 1),
             ("head_dim", False, 1), ("max_position_embeddings", False, 1),
             ("n_routed_experts", False, 1), ("num_experts_per_tok", False, 1), ("moe_intermediate_size", False, 1),
             ("n_shared_experts", False, 0), ("first_k_dense_replace", False, 0), ("moe_layer_freq", False, 1),
             ("kv_lora_rank", False, 1), ("q_lora_rank", False, 1), ("qk_rope_head_dim", False, 1),
             ("qk_nope_head_dim", False, 1), ("v_head_dim", False, 1))
_FLOATS = ("rms_norm_eps", "rope_theta")


def check_config(cfg: dict, path) -> None:
    """Types and ranges of the config.json fields dsedge computes with, before any work: one
    CheckpointError naming the file, the field and the fix (never a traceback later on)."""
    fix = "restore config.json from the original model"
    for key, required, lo in _POSITIVE:
        v = cfg.get(key)
        if v is None:
            if required:
                raise CheckpointError(f"{path}: {key} is missing", fix)
            continue
        if not isinstance(v, int) or isinstance(v, bool) or v < lo or v > 1 << 24:
            raise CheckpointError(f"{path}: {key} is {v!r}, not a whole number >= {lo}", fix)
    for key in _FLOATS:
        v = cfg.get(key)
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0):
            raise CheckpointError(f"{path}: {key} is {v!r}, not a number > 0", fix)
    heads, kv = cfg["num_attention_heads"], cfg.get("num_key_value_heads")
    if kv is not None and heads % kv:
        raise CheckpointError(f"{path}: num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}", fix)
    if cfg.get("head_dim") is None and cfg.get("kv_lora_rank") is None and cfg["hidden_size"] % heads:
        raise CheckpointError(f"{path}: hidden_size {cfg['hidden_size']} is not a multiple of num_attention_heads "
                              f"{heads} (and no head_dim is given)", fix)
    experts, top = cfg.get("n_routed_experts"), cfg.get("num_experts_per_tok")
    if experts is not None and top is not None and top > experts:
        raise CheckpointError(f"{path}: num_experts_per_tok {top} exceeds n_routed_experts {experts}", fix)
