"""On-device accuracy (`dsedge bench --accuracy`, or `python3 -m dsedge_device accuracy` by hand):
the build's eval windows (accuracy/windows.npy) through this device's runtime, one window at a
time; per position the log-probs it gives to the FP16 reference's top ids of that position
(accuracy/reference.npz), the log of its mass outside them, its log-prob of the true next token
and its argmax. Full logits never leave the device: the host scores these (dsedge.check.device_accuracy).

Every byte read is checked first: manifest.json against the release id (its hash), each file
against the manifest's sha256 and against the sha256 the host's artifact gives (`--sha256`)."""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import time
from pathlib import Path

from .runtime import open_decoder

WINDOWS, REFERENCE = "accuracy/windows.npy", "accuracy/reference.npz"
CHUNK_BYTES = 16 * 2**20


class Refused(Exception):
    """A file the accuracy run would read does not match what was flashed."""


def release_manifest(folder: Path) -> dict:
    """manifest.json of the release; in a release folder (releases/<id>, .<id>.partial, or
    `current` pointing at one) it must hash to the folder's id, as the host computes the id."""
    try:
        raw = (folder / "manifest.json").read_bytes()
        manifest = json.loads(raw)
    except (OSError, ValueError) as e:
        raise Refused(f"the release's manifest.json cannot be read ({e})") from None
    name = os.path.basename(os.path.realpath(folder))
    rid = name[1:-len(".partial")] if name.startswith(".") and name.endswith(".partial") else name
    if re.fullmatch(r"[0-9a-f]{16}", rid) and hashlib.sha256(raw).hexdigest()[:16] != rid:
        raise Refused(f"manifest.json does not hash to the release id {rid}: it changed after the flash")
    return manifest


def read_verified(folder: Path, name: str, manifest: dict, given: dict) -> bytes:
    """The file's bytes, once their sha256 equals the manifest's (and the host's, where given)."""
    want = ((manifest.get("files") or {}).get(name) or {}).get("sha256")
    if want is None:
        raise Refused(f"{name} is not in the release's manifest (an artifact built without a full check?)")
    if given.get(name, want) != want:
        raise Refused(f"{name}: the release's manifest lists sha256 {want[:16]}…, the host's artifact "
                      f"{given[name][:16]}…: another artifact is on the device")
    p = folder / name
    if not p.is_file():
        raise Refused(f"{name} is missing from the release")
    data = p.read_bytes()
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise Refused(f"{name} does not match its sha256 in the release's manifest (is {got[:16]}…, "
                      f"flashed {want[:16]}…): it changed on the device after the flash")
    return data


def _lse(x):
    """(R, V) float64 -> (R,) log-sum-exp (a row of -inf gives -inf)."""
    import numpy as np
    m = x.max(-1)
    safe = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return safe + np.log(np.exp(x - safe[:, None]).sum(-1))


def score_rows(logits, targets, top_ids) -> dict:
    """logits (T, V) float32, targets (T,), top_ids (T, k) -> top_logprobs (T, k), rest_logprob,
    target_logprob (T,) float32 (log-softmax in float64), argmax (T,) int32."""
    import numpy as np
    rows = max(1, CHUNK_BYTES // (8 * logits.shape[-1]))
    parts = []
    for lo in range(0, len(logits), rows):
        x = logits[lo:lo + rows].astype(np.float64)                         # (r, V)
        ids = top_ids[lo:lo + rows].astype(np.int64)                         # (r, k)
        lse = _lse(x)                                                        # (r,)
        rest = x.copy()
        np.put_along_axis(rest, ids, -np.inf, -1)
        parts.append({"top_logprobs": (np.take_along_axis(x, ids, -1) - lse[:, None]).astype(np.float32),
                      "rest_logprob": (_lse(rest) - lse).astype(np.float32),
                      "target_logprob": (x[np.arange(len(x)), targets[lo:lo + rows]] - lse).astype(np.float32),
                      "argmax": logits[lo:lo + rows].argmax(-1).astype(np.int32)})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _inputs(folder: Path, given: dict):
    """(windows (n, W) int64, top_ids (n, W-1, k)) from verified bytes, their shapes checked."""
    import numpy as np
    manifest = release_manifest(folder)
    windows = np.load(io.BytesIO(read_verified(folder, WINDOWS, manifest, given)), allow_pickle=False)
    with np.load(io.BytesIO(read_verified(folder, REFERENCE, manifest, given)), allow_pickle=False) as z:
        top = z["top_ids"]
    if windows.ndim != 2 or windows.dtype != np.int64 or top.ndim != 3 or top.shape[:2] != (windows.shape[0], windows.shape[1] - 1):
        raise Refused(f"{WINDOWS} {windows.shape} and {REFERENCE} top_ids {top.shape} do not fit together")
    return windows, top


def run_accuracy(folder, runtime: str = "auto", accuracy_level: int = 1, given: dict | None = None,
                 decoder=None) -> dict:
    """given: {file name: sha256} from the host's artifact. -> the JSON the host reads: runtime,
    counts, seconds, and `arrays`: base64 of an .npz of (n, W-1, ...) top_logprobs, rest_logprob,
    target_logprob, argmax."""
    import numpy as np
    folder = Path(folder)
    windows, top = _inputs(folder, given or {})
    dec = decoder or open_decoder(folder, runtime, accuracy_level)
    t0 = time.perf_counter()
    per = []
    for i, win in enumerate(windows):
        logits = dec.window_logits(win[None])                                # (W, V) float32
        if top.size and (top[i].min() < 0 or top[i].max() >= logits.shape[-1]):
            raise Refused(f"{REFERENCE}: token ids outside the model's {logits.shape[-1]} logits")
        per.append(score_rows(logits[:-1], win[1:], top[i]))
    seconds = time.perf_counter() - t0
    buf = io.BytesIO()
    np.savez(buf, **{k: np.stack([p[k] for p in per]) for k in per[0]})
    res = {"runtime": dec.name, "windows": int(windows.shape[0]), "window_tokens": int(windows.shape[1]),
           "top_k": int(top.shape[-1]), "seconds": round(seconds, 3),
           "tokens_per_s": windows.size / seconds if seconds > 0 else None,
           "verified": [WINDOWS, REFERENCE], "arrays": base64.b64encode(buf.getvalue()).decode()}
    if dec.name == "onnxruntime":
        res["onnxruntime_accuracy_level"] = dec.accuracy_level
    return res


def decode_arrays(text: str) -> dict:
    """The host's side of `arrays`: base64 .npz -> {name: array} (no pickles)."""
    import numpy as np
    with np.load(io.BytesIO(base64.b64decode(text, validate=True)), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
