"""The engine stage of `dsedge build` and `dsedge engine build`: check the ONNX against the
target's TensorRT, then build the engine where this machine can, or write the device script."""
from __future__ import annotations

import json
from pathlib import Path

from ..cache import cache_root
from ..targets import list_targets
from .build import DEVICE_SCRIPT, ENGINE_FILE, build_engine, write_device_script
from .compat import check_onnx
from .graph import load, signature
from .platform import build_refusals, running_platform
from .settings import engine_settings


def settings_for(onnx_path: Path, target, targets_dir: Path | None = None):
    model, _ = load(onnx_path)
    return engine_settings(target, signature(model), cache_root(), list_targets(targets_dir).values(),
                           max_positions=max_positions(Path(onnx_path).parent))


def max_positions(folder: Path) -> int | None:
    """The model's max_position_embeddings from the artifact's config.json (None: not stated)."""
    try:
        v = json.loads((folder / "config.json").read_text()).get("max_position_embeddings")
    except (OSError, ValueError, AttributeError):
        return None
    return v if isinstance(v, int) and v > 1 else None


def engine_stage(folder: Path, target, targets_dir: Path | None = None, build: bool = True,
                 name: str | None = None) -> tuple[dict, dict]:
    """-> (tensorrt compatibility report, engine record) for the artifact being written in `folder`
    (a staging folder: `name` is the artifact's own name, for build_engine.sh). Builds
    model.engine when TensorRT runs here on a GPU matching the target; otherwise writes
    build_engine.sh, the exact command to run on the device, and says why."""
    onnx_path = folder / "model.onnx"
    compat = check_onnx(onnx_path, target)
    settings = settings_for(onnx_path, target, targets_dir)
    record = {"built": False, "settings": settings.to_dict()}
    if not compat.ok:
        record["reason"] = (f"the ONNX is not compatible with TensorRT {target.tensorrt.version}: "
                            f"{compat.problems[0].node}: {compat.problems[0].reason}")
        return compat.to_dict(), record
    refusals = build_refusals(target, running_platform())
    if refusals or not build:
        write_device_script(folder, target, settings, name)
        record.update(reason="; ".join(refusals) or "engine build skipped (--no-engine)",
                      device_script=DEVICE_SCRIPT)
        return compat.to_dict(), record
    info = build_engine(onnx_path, target, settings, folder / ENGINE_FILE)
    record.update(built=True, reason=None, **info.to_dict())
    return compat.to_dict(), record
