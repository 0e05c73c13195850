"""The report's figures, drawn with matplotlib (imported here only, Agg canvas, no pyplot state)
and returned as PNG bytes; None when the report does not hold the data (the caller says why).

  sqnr_figure      per-layer SQNR of every quantized linear, one line per projection kind
  kl_figure        distribution of per-token KL(FP16 ‖ ONNX) on log-spaced bins
  latency_figure   host decode per-token latency samples and prefill samples
"""
from __future__ import annotations

import io
import re

_LAYER = re.compile(r"\.(\d+)\.(?:[a-z_]+\.)?([a-z_]+)$")     # "model.layers.3.self_attn.q_proj" -> 3, q_proj


def _figure(w: float = 7.5, h: float = 3.6, ncols: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), layout="constrained", dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols)
    return fig, axes


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def sqnr_figure(layers: list[dict]) -> bytes | None:
    pts = [r for r in layers or [] if r.get("sqnr_db") is not None]
    if not pts:
        return None
    fig, ax = _figure()
    kinds: dict[str, list[tuple[int, float]]] = {}
    others = []
    for r in pts:
        m = _LAYER.search(r["name"])
        if m:
            kinds.setdefault(m.group(2), []).append((int(m.group(1)), r["sqnr_db"]))
        else:  # lm_head and anything outside the decoder blocks
            others.append(r)
    for kind, xy in sorted(kinds.items()):
        xy.sort()
        ax.plot([x for x, _ in xy], [y for _, y in xy], marker="o", ms=3, lw=1, label=kind)
    last = max((x for xy in kinds.values() for x, _ in xy), default=-1)
    for i, r in enumerate(others):
        ax.plot([last + 1 + i], [r["sqnr_db"]], marker="s", ls="", label=r["name"])
    from matplotlib.ticker import MaxNLocator

    bits = sorted({r["bits"] for r in pts})
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("decoder layer")
    ax.set_ylabel("SQNR (dB, higher is better)")
    ax.set_title(f"weight SQNR per quantized linear ({', '.join(f'INT{b}' for b in bits)})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncols=4, loc="best")
    return _png(fig)


def kl_figure(hist: dict | None, quantiles: dict | None) -> bytes | None:
    if not hist or not hist.get("n"):
        return None
    edges, counts = hist["edges"], hist["counts"]
    fig, ax = _figure()
    ax.stairs(counts, edges, fill=True, alpha=0.6)
    ax.set_xscale("log")
    for name, v in (quantiles or {}).items():
        if v and v > 0 and name in ("p50", "p90", "p99"):
            ax.axvline(v, color="k", ls="--", lw=0.8)
            ax.annotate(f" {name}", (v, 0.98), xycoords=("data", "axes fraction"), fontsize=8, ha="left", va="top")
    nz = [i for i, c in enumerate(counts) if c]
    if nz:
        ax.set_xlim(edges[max(nz[0] - 1, 0)], edges[min(nz[-1] + 2, len(edges) - 1)])
    ax.set_xlabel("KL(FP16 ‖ ONNX) per token (nats, log scale)")
    ax.set_ylabel("tokens")
    extra = f"; {hist['below']} tokens below {edges[0]:g}" if hist.get("below") else ""
    ax.set_title(f"per-token KL over {hist['n']} tokens{extra}", fontsize=10)
    ax.grid(alpha=0.3)
    return _png(fig)


def latency_figure(lat: dict | None) -> bytes | None:
    if not lat or not lat.get("decode_ms_samples"):
        return None
    fig, (a, b) = _figure(9, 3.4, ncols=2)
    dec = lat["decode_ms_samples"]
    a.hist(dec, bins=min(20, max(5, len(dec) // 2)), alpha=0.7)
    for name, v in (("median", lat["decode_ms_median"]), ("p90", lat["decode_ms_p90"])):
        a.axvline(v, color="k", ls="--" if name == "median" else ":", lw=0.9, label=f"{name} {v:.3g} ms")
    a.set_xlabel("decode latency per token (ms)")
    a.set_ylabel("tokens")
    a.set_title(f"decode, {len(dec)} tokens after warm-up", fontsize=10)
    a.legend(fontsize=8)
    pre = lat.get("prefill_ms_samples") or []
    b.plot(range(1, len(pre) + 1), pre, marker="o", ls="")
    if pre:
        b.axhline(lat["prefill_ms_median"], color="k", ls="--", lw=0.9, label=f"median {lat['prefill_ms_median']:.3g} ms")
        b.legend(fontsize=8)
    from matplotlib.ticker import MaxNLocator

    b.xaxis.set_major_locator(MaxNLocator(integer=True))
    b.set_xlabel("run")
    b.set_ylabel("ms")
    b.set_title(f"prefill of {lat['prompt_tokens']} tokens, {len(pre)} runs", fontsize=10)
    for ax in (a, b):
        ax.grid(alpha=0.3)
    return _png(fig)
