"""The fit stage of `dsedge build --fit` (dsedge/fit/): the units, the target's budget at the
context, each unit's measured cost, the choice; -> the fitted MixedPrecisionConfig the quantize
stage then runs (round to nearest at each unit's scheme) and the record the manifest and report
keep (every unit's choice, its costs, the predicted and the measured KL)."""
from __future__ import annotations

import time
from dataclasses import replace

import torch

from ..calib.recipes import resolve_calibration
from ..errors import FitError
from ..fit import budget as fit_budget
from ..fit import sensitivity, solve, units as fit_units
from ..fit.budget import stored_parts
from ..plan.memory import GiB
from .quantize import round_to_fp16


def fit_stage(job, calib_spec, chat_template: bool | None = None):
    """job: the load stage's Loaded, whose quant is the unfitted MixedPrecisionConfig.
    -> (fitted config, record, the calibration data it measured on: None when nothing was measured)."""
    req, ckpt = job.quant, job.ckpt
    tied = f"{ckpt.spec.head}.weight" not in ckpt.index
    units = fit_units.checkpoint_units(ckpt.spec, ckpt.n_layers, lambda n: tuple(ckpt.index[f"{n}.weight"].shape),
                                       tied)
    options = {u.name: fit_units.choices(u, req.group_size) for u in units}
    costs = {u.name: [fit_units.unit_bytes(u, s) for _, s in options[u.name]] for u in units}
    b = fit_budget.weight_budget(ckpt.raw_config, job.target, units, req.context, job.kv_cache, req.max_bits)
    cheapest = sum(c[0] for c in costs.values())
    if cheapest > b.bytes:
        raise FitError(_infeasible(b, cheapest, job.target.name),
                       "pass a shorter --context, --kv-cache int8, a higher --fit-bits, or a target with more memory "
                       "(`dsedge plan --fit` shows the arithmetic)")
    t0 = time.perf_counter()
    fp16 = {u.name: len(options[u.name]) - 1 for u in units}
    if sum(c[-1] for c in costs.values()) <= b.bytes:   # FP16 everywhere fits: nothing to measure or trade
        record = _record(req, b, units, options, costs, fp16, {u.name: {} for u in units}, cheapest, t0,
                         "nothing: every unit fits at FP16 within the budget, so no unit was measured")
        return replace(req, fitted=True, stored=tuple(stored_parts(b, units, _bytes(units, costs, fp16)).items()),
                       schemes=()), record, None
    kept = {}

    def model():
        if "m" not in kept:
            kept["m"] = round_to_fp16(ckpt.load_model(torch.float32)).eval()
        return kept["m"]
    calib = resolve_calibration(calib_spec, job.tokenizer, chat_template=chat_template, model=model)
    ids = sensitivity.windows(calib.input_ids, int(ckpt.raw_config["vocab_size"]))
    kl = sensitivity.measure(model(), units, options, ids)
    table = [[(costs[u.name][j], 0.0 if s.bits >= 16 else kl[u.name][label])
              for j, (label, s) in enumerate(options[u.name])] for u in units]
    pick = dict(zip((u.name for u in units), solve.choose(table, b.bytes)))
    chosen = {n: options[n][j][1] for n, j in pick.items()}
    measured = sensitivity.mix_kl(model(), chosen, ids)
    kept.clear()
    record = _record(req, b, units, options, costs, pick, kl, cheapest, t0,
                     f"{ids.shape[0]} calibration windows x {ids.shape[1]} tokens ({calib.source}), torch")
    record.update(predicted_kl=sum(table[i][pick[u.name]][1] for i, u in enumerate(units)), measured_kl=measured)
    record["cheapest"]["predicted_kl"] = sum(row[0][1] for row in table)
    fitted = replace(req, fitted=True, stored=tuple(stored_parts(b, units, _bytes(units, costs, pick)).items()),
                     schemes=tuple((n, s.bits, s.group_size) for n, s in chosen.items() if s.bits < 16))
    return fitted, record, calib


def _bytes(units, costs, pick) -> dict[str, int]:
    return {u.name: costs[u.name][pick[u.name]] for u in units}


def _record(req, b, units, options, costs, pick: dict[str, int], kl: dict, cheapest: int, t0: float,
            measured_on: str) -> dict:
    """What the manifest and report keep of a fit; pick: unit name -> index of its choice.
    KL figures are 0 until the caller sets the measured ones."""
    weight = sum(_bytes(units, costs, pick).values())
    counts: dict[str, int] = {}
    for u in units:
        label = options[u.name][pick[u.name]][0]
        counts[label] = counts.get(label, 0) + 1
    rows = []
    for u in units:
        label, s = options[u.name][pick[u.name]]
        rows.append({"name": u.name, "part": u.part, "shape": [u.out_features, u.in_features], "choice": label,
                     "bits": s.bits, "group_size": s.group_size, "bytes": costs[u.name][pick[u.name]],
                     "kl": {k: round(v, 8) for k, v in kl[u.name].items()}})
    return {"group_size": req.group_size, "budget": b.to_dict(), "weight_bytes": weight,
            "bits_per_weight": round(8 * weight / b.params, 4), "counts": counts,
            "cheapest": {"bytes": cheapest, "bits_per_weight": round(8 * cheapest / b.params, 4), "predicted_kl": None},
            "predicted_kl": 0.0, "measured_kl": 0.0, "measured_on": measured_on,
            "seconds": round(time.perf_counter() - t0, 2), "units": rows}


def _infeasible(b, cheapest: int, target: str) -> str:
    g = lambda x: f"{x / GiB:.2f} GiB" if abs(x) >= GiB / 10 else f"{x / 2**20:.2f} MiB"
    if b.binding == "--fit-bits":
        return (f"--fit-bits allows {g(b.bytes)} for the fitted weights; the cheapest storage of every unit "
                f"(INT4, INT8 embedding) needs {g(cheapest)}, {8 * cheapest / b.params:.3f} bits per weight")
    return (f"on {target} at context {b.context} the fitted weights may take {g(b.bytes)} (usable {g(b.usable_bytes)} "
            f"- KV cache {g(b.kv_bytes)} - workspace {g(b.workspace_bytes)} - runtime {g(b.runtime_bytes)} - "
            f"other weights {g(b.fixed_bytes)}); the cheapest storage of every unit (INT4, INT8 embedding) "
            f"needs {g(cheapest)}")
