"""config.json alone, for the planner: a checkpoint folder, a config.json path, or a hub id
(only config.json is fetched, and only when online)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from .. import reference
from ..errors import CheckpointError


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
    return config


def _download_config(repo_id: str) -> Path:
    from .checkpoint import _HUB_ID

    if not _HUB_ID.match(repo_id):
        raise CheckpointError(f"{repo_id} does not exist", "pass a checkpoint folder, its config.json, or a hub id")
    fix = f"download it where the Hub is reachable (`hf download {repo_id} config.json`) and pass the file"
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        raise CheckpointError(f"{repo_id} is not a local path and HF_HUB_OFFLINE is set", fix)
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id, "config.json", etag_timeout=10))
    except Exception as e:  # noqa: BLE001 - any network / auth failure gets the same advice
        raise CheckpointError(f"cannot fetch config.json of {repo_id} ({type(e).__name__})", fix) from None
