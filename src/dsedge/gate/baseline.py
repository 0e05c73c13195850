"""The baseline file: a candidate's gateable metrics and identity, small enough to commit.
Written only on purpose (`dsedge gate ... --update-baseline`)."""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..errors import UsageError
from .inputs import BASELINE_FORMAT, BASELINE_KEY, Gateable


def baseline_dict(g: Gateable) -> dict:
    return {
        BASELINE_KEY: BASELINE_FORMAT,
        "label": g.label,
        "from": str(g.path),
        "created_unix": int(time.time()),
        "dsedge_version": g.dsedge_version,
        "source": {"name": g.source_name, "sha256": g.source_sha256},
        "eval": {"sha256": g.eval_sha256, "source": g.eval_source},
        "metrics": g.metrics,
        "missing": g.missing,
        **({"device": g.device} if g.device else {}),
    }


def write_baseline(g: Gateable, path: str | Path) -> Path:
    """Write `g` as a baseline file at `path` (a .json file; its folder is created, as --junit's is)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"--baseline {path} is a folder (an artifact?); --update-baseline writes a baseline file",
                         "pass a file path, e.g. --baseline dsedge-baseline.json")
    if path.suffix != ".json":
        raise UsageError(f"--baseline {path}: a baseline file is JSON", "give it a .json name, e.g. dsedge-baseline.json")
    if (blocker := next((p for p in path.parents if p.exists() and not p.is_dir()), None)) is not None:
        raise UsageError(f"--baseline {path}: {blocker} is a file, not a folder", "pass a path inside a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(baseline_dict(g), indent=2) + "\n")
    tmp.replace(path)  # never a half-written baseline
    return path
