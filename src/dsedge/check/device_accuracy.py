"""Accuracy measured on the device (`dsedge bench --accuracy`): what a build leaves in the artifact
so that a device can score its own runtime against the FP16 reference without the reference's
full logits, and the scores from what the device sends back.

At build time, per position of the eval windows the check measured on, the FP16 reference's TOP_K
most likely token ids and their log-probs, the log of the mass it leaves outside them, the log-prob
of the true next token and its argmax (accuracy/reference.npz, beside the windows themselves in
accuracy/windows.npy). The device returns, per position, the log-probs it gives to those same ids,
the log of its own mass outside them, its log-prob of the true next token and its argmax
(deploy/device/accuracy.py computes them; nothing there imports this module).

The KL computed from them, over the TOP_K ids plus one bucket holding the rest, is the KL of the two
distributions coarsened to TOP_K + 1 outcomes: never above the full KL(P_ref || Q_dev) (log-sum
inequality), equal to it when the reference leaves no mass outside its top ids. Perplexity and
top-1 agreement need no bound: they are exact."""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from ..errors import UsageError

TOP_K = 64
WINDOWS_FILE, REFERENCE_FILE = "accuracy/windows.npy", "accuracy/reference.npz"
FILES = (WINDOWS_FILE, REFERENCE_FILE)
# what the device sends back per position (deploy/device/accuracy.py's names)
DEVICE_ARRAYS = ("top_logprobs", "rest_logprob", "target_logprob", "argmax")
CHUNK_BYTES = 16 * 2**20          # float64 rows summarized at once
LOWER_BOUND_NOTE = (f"KL over the FP16 reference's top-{TOP_K} ids of each position, the rest of the vocabulary "
                    "lumped into one bucket: a lower bound of the full KL (equal when the reference puts no mass "
                    "outside its top ids); perplexity and top-1 agreement are exact")


def _lse(x: np.ndarray) -> np.ndarray:
    """(R, V) float64 -> (R,) log-sum-exp (a row of -inf gives -inf)."""
    m = x.max(-1)
    safe = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return safe + np.log(np.exp(x - safe[:, None]).sum(-1))


def summarize(logits: np.ndarray, targets: np.ndarray, k: int = TOP_K) -> dict[str, np.ndarray]:
    """The reference's summary of each row: logits (R, V) float32, targets (R,) the true next
    tokens -> top_ids (R, k) int32 most likely first, top_logprobs (R, k) float16, rest_logprob,
    target_logprob (R,) float32, argmax (R,) int32."""
    k = min(k, logits.shape[-1])
    rows = max(1, CHUNK_BYTES // (8 * logits.shape[-1]))
    parts = [_summarize_chunk(logits[lo:lo + rows], targets[lo:lo + rows], k) for lo in range(0, len(logits), rows)]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _summarize_chunk(logits: np.ndarray, targets: np.ndarray, k: int) -> dict[str, np.ndarray]:
    top = np.argpartition(-logits, k - 1, axis=-1)[:, :k] if k < logits.shape[-1] else \
        np.broadcast_to(np.arange(k), (len(logits), k))                          # (R, k) unordered
    order = np.argsort(-np.take_along_axis(logits, top, -1), axis=-1, kind="stable")
    top = np.take_along_axis(top, order, -1)                                      # (R, k) most likely first
    x = logits.astype(np.float64)                                                 # (R, V)
    lse = _lse(x)                                                                 # (R,)
    rest = x.copy()
    np.put_along_axis(rest, top, -np.inf, -1)
    return {"top_ids": top.astype(np.int32),
            "top_logprobs": (np.take_along_axis(x, top, -1) - lse[:, None]).astype(np.float16),
            "rest_logprob": (_lse(rest) - lse).astype(np.float32),
            "target_logprob": (np.take_along_axis(x, targets[:, None].astype(np.int64), -1)[:, 0] - lse).astype(np.float32),
            "argmax": logits.argmax(-1).astype(np.int32)}


class ReferenceTap:
    """The FP16 reference's logits function, summarizing each eval window's rows as evaluate()
    reads them: a 152k-vocabulary reference's logits are neither held nor computed twice.
    Calls with other ids (task prompts) pass through untouched."""

    def __init__(self, fn, data, k: int = TOP_K):
        self.fn, self.data, self.k = fn, data, k
        self.width = data.windows.shape[1]
        self.wanted = {w.tobytes() for w in data.windows}
        self.rows: dict[bytes, dict[str, np.ndarray]] = {}      # window bytes -> (W-1, ...) summary

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        out = self.fn(ids)                                                        # (B, W, V)
        if ids.ndim == 2 and ids.shape[1] == self.width:
            for i, row in enumerate(ids):
                key = row.tobytes()
                if key in self.wanted and key not in self.rows:
                    self.rows[key] = summarize(np.asarray(out[i, :-1], np.float32), row[1:], self.k)
        return out

    def reference(self) -> dict[str, np.ndarray]:
        """(n, W-1, ...) arrays over every eval window (one evaluate() did not read is run here),
        with `scored` (n, W-1): the positions the check scored."""
        for w in self.data.windows:
            if w.tobytes() not in self.rows:
                self(w[None])
        per = [self.rows[w.tobytes()] for w in self.data.windows]
        out = {name: np.stack([p[name] for p in per]) for name in per[0]}
        n, width = self.data.windows.shape
        scored = self.data.scored
        out["scored"] = np.ones((n, width - 1), bool) if scored is None else np.asarray(scored[:, 1:], bool)
        return out


def write_reference(folder: Path, windows: np.ndarray, ref: dict[str, np.ndarray] | None) -> dict | None:
    """accuracy/windows.npy and accuracy/reference.npz in `folder` (an artifact's staging folder,
    before its manifest is written) -> the report's `accuracy_reference` entry (None: no reference)."""
    if ref is None:
        return None
    folder = Path(folder)
    (folder / "accuracy").mkdir(exist_ok=True)
    np.save(folder / WINDOWS_FILE, np.asarray(windows, np.int64))
    np.savez_compressed(folder / REFERENCE_FILE, **ref)
    scored = ref["scored"]
    return {"windows": WINDOWS_FILE, "reference": REFERENCE_FILE, "top_k": int(ref["top_ids"].shape[-1]),
            "eval_windows": int(windows.shape[0]), "window_tokens": int(windows.shape[1]),
            "scored_positions": int(scored.sum()),
            "bytes": sum((folder / f).stat().st_size for f in FILES),
            "fp16_reference_perplexity": float(np.exp(-ref["target_logprob"][scored].astype(np.float64).mean())),
            "for": "dsedge bench ARTIFACT --accuracy (the device scores its own runtime against the FP16 reference)"}


def read_verified(folder: Path, name: str, manifest: dict) -> bytes:
    """A file of an artifact, its bytes checked against the manifest's sha256 before any is used."""
    want = (manifest.get("files") or {}).get(name)
    data = (Path(folder) / name).read_bytes() if (Path(folder) / name).is_file() else None
    if not isinstance(want, dict) or data is None:
        raise UsageError(f"{folder}: {name} is missing or not in the manifest", "rebuild the artifact (dsedge build)")
    if len(data) != want.get("bytes") or hashlib.sha256(data).hexdigest() != want.get("sha256"):
        raise UsageError(f"{folder}: {name} does not match its sha256 in manifest.json: it changed after dsedge "
                         "wrote it", "rebuild the artifact (or copy it again from where it was built)")
    return data


def load_reference(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {name: z[name] for name in z.files}


def score(ref: dict[str, np.ndarray], dev: dict[str, np.ndarray]) -> dict:
    """Figures from the reference summary and the device's answers (both (n, W-1, ...) arrays),
    over the scored positions. A device answer of the wrong shape or with NaN is refused."""
    mask = ref["scored"]                                                          # (n, T)
    for name in DEVICE_ARRAYS:
        want = ref[name].shape if name != "top_logprobs" else ref["top_ids"].shape
        if name not in dev or dev[name].shape != want:
            raise ValueError(f"the device's {name} has shape {getattr(dev.get(name), 'shape', None)}, expected {want}")
        if name != "argmax" and not (dev[name] <= 1e-4).all():        # log-probs: NaN or > 0 mean nothing
            raise ValueError(f"the device's {name} holds NaN or positive log-probs")
    lp = ref["top_logprobs"][mask].astype(np.float64)                             # (N, k)
    lq = dev["top_logprobs"][mask].astype(np.float64)                             # (N, k)
    lp_rest = ref["rest_logprob"][mask].astype(np.float64)                        # (N,)
    lq_rest = dev["rest_logprob"][mask].astype(np.float64)
    # the reference's k + 1 masses renormalized: FP16 rounding of its log-probs (up to ~2e-3 at
    # -8) would otherwise leave them summing to 1 ± 1e-4, a first-order error in a KL of 1e-4
    z = np.logaddexp(np.logaddexp.reduce(lp, axis=-1), lp_rest)                  # (N,)
    lp, lp_rest = lp - z[:, None], lp_rest - z
    p, p_rest = np.exp(lp), np.exp(lp_rest)
    with np.errstate(invalid="ignore"):
        rest_term = np.where(p_rest > 0, p_rest * (lp_rest - lq_rest), 0.0)       # (N,)
    kl = (p * (lp - lq)).sum(-1) + rest_term                                      # (N,)
    nll, ref_nll = -dev["target_logprob"][mask].astype(np.float64), -ref["target_logprob"][mask].astype(np.float64)
    ppl, ref_ppl = float(np.exp(nll.mean())), float(np.exp(ref_nll.mean()))
    q = np.quantile(kl, (0.5, 0.9, 0.99))
    return {"kl": float(kl.mean()), "kl_bound": "lower", "top_k": int(lp.shape[-1]),
            "kl_quantiles": {"p50": float(q[0]), "p90": float(q[1]), "p99": float(q[2]), "max": float(kl.max())},
            "top1_agreement": float((dev["argmax"][mask] == ref["argmax"][mask]).mean()),
            "perplexity": ppl, "fp16_reference_perplexity": ref_ppl,
            "ppl_change_pct": round(100 * (ppl / ref_ppl - 1), 4), "scored_positions": int(mask.sum()),
            "note": LOWER_BOUND_NOTE}
