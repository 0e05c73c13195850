"""`dsedge build --fit` end to end on qwen2-tiny (the real CLI, onnxruntime, the static TensorRT
check): the record in report.json and manifest.json against the units, bytes and budget worked
out here from the checkpoint; the ONNX graph stores each unit as chosen (the embedding gathered
as INT8); and the bad inputs of --fit exit 2 with one message, no traceback, no artifact."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import onnx
import pytest
import yaml

from dsedge import reference
from dsedge.fit.solve import choose
from dsedge.fit.units import FP16, checkpoint_units, choices, unit_bytes
from dsedge.load import open_checkpoint
from dsedge.plan.memory import GiB, plan_memory
from dsedge.quantize.configs import Fp16Config
from dsedge.targets import find_target
from tests.conftest import MOE_REFERENCE

NAME = "qwen2-tiny"
FAST = ["--no-latency", "--check", "quick", "--eval-windows", "4"]


def _cli(*args, timeout=600):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "dsedge", "build", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


class Model:
    """The units of qwen2-tiny and their bytes, from the checkpoint's shapes."""
    def __init__(self, name=NAME):
        self.path = reference.checkpoint_path(name)
        self.ckpt = ck = open_checkpoint(self.path)
        self.units = checkpoint_units(ck.spec, ck.n_layers, lambda n: tuple(ck.index[f"{n}.weight"].shape), False)
        self.params = sum(u.out_features * u.in_features for u in self.units)
        self.cheapest = sum(unit_bytes(u, choices(u, 128)[0][1]) for u in self.units)
        self.fp16 = sum(2 * u.out_features * u.in_features for u in self.units)
        keys = {f"{u.name}.weight" for u in self.units}
        self.fixed = sum(2 * _numel(t.shape) for k, t in ck.index.items() if k not in keys)   # norms, biases


@pytest.fixture(scope="module")
def tiny():
    return Model()


def _initializers(folder):
    m = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    return m, {i.name: i for i in m.graph.initializer}


def check_fit_artifact(out, tiny: Model) -> dict:
    """What every measured --fit build holds; -> report["fit"]."""
    r = json.loads((out / "report.json").read_text())
    man = json.loads((out / "manifest.json").read_text())
    fit = r["fit"]
    # every unit, in order, has one of its choices, at that choice's bytes
    assert [u["name"] for u in fit["units"]] == [u.name for u in tiny.units]
    for u, rec in zip(tiny.units, fit["units"]):
        opts = dict(choices(u, 128))
        assert rec["choice"] in opts, rec
        s = opts[rec["choice"]]
        assert (rec["bits"], rec["group_size"]) == (s.bits, s.group_size)
        assert rec["bytes"] == unit_bytes(u, s) and rec["shape"] == [u.out_features, u.in_features]
        assert set(rec["kl"]) == {label for label, x in opts.items() if x.bits < 16}
    weight = sum(rec["bytes"] for rec in fit["units"])
    assert fit["weight_bytes"] == weight <= fit["budget"]["bytes"]
    assert fit["bits_per_weight"] == pytest.approx(8 * weight / tiny.params, abs=1e-4)
    assert fit["cheapest"]["bytes"] == tiny.cheapest <= weight
    counts = {}
    for rec in fit["units"]:
        counts[rec["choice"]] = counts.get(rec["choice"], 0) + 1
    assert fit["counts"] == counts
    # the record's prediction is the sum of the chosen units' costs, and the least within the budget
    table = [[(unit_bytes(u, s), 0.0 if s.bits >= 16 else rec["kl"][label]) for label, s in choices(u, 128)]
             for u, rec in zip(tiny.units, fit["units"])]
    chosen = [next(j for j, (label, _) in enumerate(choices(u, 128)) if label == rec["choice"])
              for u, rec in zip(tiny.units, fit["units"])]
    predicted = sum(table[i][j][1] for i, j in enumerate(chosen))
    rounding = 0.5e-8 * len(tiny.units)            # the record keeps each unit's KL to 8 decimals
    assert fit["predicted_kl"] == pytest.approx(predicted, abs=rounding)
    best = choose(table, fit["budget"]["bytes"])
    assert predicted <= sum(table[i][j][1] for i, j in enumerate(best)) + 2 * rounding
    # predicted (sum of single-unit costs) and measured (the whole mix) agree within a factor of 3
    assert fit["predicted_kl"] > 0 and fit["measured_kl"] > 0
    assert 1 / 3 <= fit["predicted_kl"] / fit["measured_kl"] <= 3, (fit["predicted_kl"], fit["measured_kl"])
    assert fit["measured_kl_eval"] == r["onnx"]["kl"] > 0
    # manifest: the fitted config lists every quantized unit's scheme; FP16 units are not listed
    q = man["quantization"]
    assert q["method"] == "fit" and q["fitted"] is True and r["quantization"]["method"] == "fit"
    assert [tuple(s) for s in q["schemes"]] == [(rec["name"], rec["bits"], rec["group_size"])
                                                 for rec in fit["units"] if rec["choice"] != "fp16"]
    stored = dict(q["stored"])
    assert sum(stored.values()) == weight + tiny.fixed
    assert stored["embeddings"] == fit["units"][0]["bytes"] and stored["lm_head"] == fit["units"][-1]["bytes"]
    assert man["fit"] == {k: v for k, v in fit.items() if not k.startswith("measured_kl_eval")}
    layers = {row["name"]: row for row in r["layers"]}
    for rec in fit["units"]:
        if rec["choice"] == "fp16":
            assert rec["name"] not in layers
        else:
            assert (layers[rec["name"]]["bits"], layers[rec["name"]]["group_size"]) == (rec["bits"], rec["group_size"])
    # the graph stores each unit as chosen
    model, inits = _initializers(out)
    want = {"int4": onnx.TensorProto.INT4, "int8": onnx.TensorProto.INT8}
    for rec in fit["units"]:
        key = f"m.{rec['name']}.weight_quantized"
        if rec["choice"] == "fp16":
            assert key not in inits, key
        else:
            assert inits[key].data_type == want[rec["choice"]], key
    emb = tiny.units[0]
    gathered = [inits[n.input[0]] for n in model.graph.node if n.op_type == "Gather" and n.input[0] in inits
                and list(inits[n.input[0]].dims) == [emb.out_features, emb.in_features]]
    assert len(gathered) == 1                                    # the one lookup, of the whole table
    if fit["units"][0]["choice"] == "int8":   # gathered as INT8, dequantized after the lookup
        assert gathered[0].data_type == onnx.TensorProto.INT8
        assert f"m.{emb.name}.weight" not in inits              # no FP16 copy of the table
        assert not [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == gathered[0].name]
    else:
        assert gathered[0].data_type == onnx.TensorProto.FLOAT16
    # ONNX agrees with PyTorch, and the graph passes the target's TensorRT check
    fid = r["export_fidelity"]
    assert fid["max_abs_diff"] <= fid["atol"] + fid["rtol"] * fid["max_abs_logit"]
    assert r["greedy_generation"]["agrees"]
    assert r["tensorrt_compat"]["ok"] and man["tensorrt_compat"]["ok"]
    mix = ", ".join(f"{counts[k]} {k.upper()}" for k in ("int4", "int8", "fp16") if k in counts)
    assert f"| fit | {mix}: " in (out / "report.md").read_text()
    return fit


BITS = 5.0


@pytest.fixture(scope="module")
def fit_bits_build(tmp_path_factory, tiny):
    """`dsedge build --fit --fit-bits 5` of qwen2-tiny -> (artifact folder, CLI stdout)."""
    out = tmp_path_factory.mktemp("fit-bits") / "fit"
    p = _cli("--model", tiny.path, "--fit", "--fit-bits", BITS, "-o", out, *FAST)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return out, p.stdout


@pytest.mark.slow
def test_fit_bits_build(fit_bits_build, tiny):
    """--fit-bits 5 on qwen2-tiny (cheapest mix 4.42 bits, FP16 16): the bits bind, and the room
    is too small for an FP16 embedding, so the embedding is INT8 and gathered as INT8."""
    budget = int(BITS * tiny.params / 8)
    emb = tiny.units[0]
    assert emb.part == "embeddings" and tiny.cheapest < budget < tiny.fp16
    assert unit_bytes(emb, FP16) - unit_bytes(emb, choices(emb, 128)[0][1]) > budget - tiny.cheapest
    out, stdout = fit_bits_build
    fit = check_fit_artifact(out, tiny)
    b = fit["budget"]
    assert b["binding"] == "--fit-bits" and b["bits_bytes"] == b["bytes"] == budget
    assert fit["units"][0]["choice"] == "int8"
    # the room buys upgrades: a mix of INT4 and INT8, better than the cheapest
    assert {"int4", "int8"} <= set(fit["counts"]) and fit["weight_bytes"] > tiny.cheapest
    assert fit["predicted_kl"] < fit["cheapest"]["predicted_kl"]
    assert "fit" in stdout and "--fit-bits" in " ".join(stdout.split())


@pytest.mark.slow
def test_the_fitted_config_reads_back_from_the_manifest(fit_bits_build, tiny):
    """The manifest's quantization is the fitted config itself: read back, it stores each unit as
    the fit chose (a rebuild from it takes no second fit: api.build skips the fit when `fitted`)."""
    from dsedge.artifact import verify_artifact
    from dsedge.quantize import config_from_dict
    from dsedge.quantize.configs import MixedPrecisionConfig

    out, _ = fit_bits_build
    man = verify_artifact(out)
    cfg = config_from_dict(man["quantization"])
    assert isinstance(cfg, MixedPrecisionConfig) and cfg.fitted and cfg.max_bits == BITS
    assert json.loads(json.dumps(cfg.to_dict())) == man["quantization"]
    for rec in man["fit"]["units"]:
        if rec["choice"] != "fp16":
            s = cfg.scheme_of(rec["name"], rec["shape"][1])
            assert (s.bits, s.group_size) == (rec["bits"], rec["group_size"])
        else:
            assert rec["name"] not in cfg.names()


@pytest.mark.slow
def test_the_manifest_records_the_calibration_the_fit_measured_on(fit_bits_build):
    out, _ = fit_bits_build
    man = json.loads((out / "manifest.json").read_text())
    assert man["fit"]["measured_on"].startswith("8 calibration windows")   # the fit did measure on calibration
    assert man["calibration"] is not None and len(man["calibration"]["sha256"]) == 64


def _target(tmp_path, usable_bytes: int, name: str = "mine"):
    data = find_target("orin").to_dict()
    data.update(name=name, aliases=[])
    data["memory"] = {**data["memory"], "usable_gb": usable_bytes / GiB}
    folder = tmp_path / "targets"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(data))
    return folder, find_target(name, folder)


@pytest.mark.slow
def test_target_memory_build_at_a_context(tmp_path, tiny):
    """A target whose memory at --context 256 leaves the fitted weights half-way from their
    cheapest to FP16: the target binds, and the budget is usable - KV cache - workspace - runtime
    - norms and biases, each from the planner or the checkpoint."""
    cfg, context = tiny.ckpt.raw_config, 256
    p = plan_memory(cfg, find_target("orin"), Fp16Config(), context)   # "mine" is a copy of orin but its memory
    budget = (tiny.cheapest + tiny.fp16) // 2
    usable = budget + p.kv_bytes + p.workspace_bytes + p.overhead_bytes + tiny.fixed
    folder, tgt = _target(tmp_path, usable)
    assert abs(int(tgt.memory.usable_gb * GiB) - usable) <= 1
    out = tmp_path / "fit"
    run = _cli("--model", tiny.path, "--fit", "--context", context, "--target", "mine", "--targets-dir", folder,
               "-o", out, *FAST)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    fit = check_fit_artifact(out, tiny)
    b = fit["budget"]
    assert b["binding"] == "target memory" and b["bits_bytes"] is None and b["context"] == context
    hd = cfg["hidden_size"] // cfg["num_attention_heads"]
    assert p.kv_bytes == cfg["num_hidden_layers"] * 2 * cfg["num_key_value_heads"] * hd * context * 2
    assert abs(b["bytes"] - budget) <= 1
    # half the room: more than the cheapest, less than FP16 everywhere
    assert tiny.cheapest < fit["weight_bytes"] <= b["bytes"] < tiny.fp16


@pytest.mark.slow
def test_fit_where_everything_fits_at_fp16(tmp_path, tiny):
    """Without --fit-bits a tiny model fits orin at FP16: every unit FP16, nothing measured, no
    quantized weight in the graph."""
    import dsedge
    from dsedge.quantize.configs import MixedPrecisionConfig

    res = dsedge.build(tiny.path, target="orin", quant=MixedPrecisionConfig(), output=tmp_path / "fp16",
                       latency=False, check_scope="quick", eval_windows=4)
    fit = res.report["fit"]
    assert fit["budget"]["binding"] == "target memory" and tiny.fp16 <= fit["budget"]["bytes"]
    assert [u["choice"] for u in fit["units"]] == ["fp16"] * len(tiny.units)
    assert fit["weight_bytes"] == tiny.fp16 and fit["counts"] == {"fp16": len(tiny.units)}
    assert fit["predicted_kl"] == 0 and fit["measured_kl"] == 0 and fit["measured_on"].startswith("nothing")
    assert all(u["kl"] == {} for u in fit["units"])
    assert res.manifest["quantization"]["schemes"] == [] and res.manifest["fit"]["units"] == fit["units"]
    assert sum(dict(res.manifest["quantization"]["stored"]).values()) == tiny.fp16 + tiny.fixed
    _, inits = _initializers(res.path)
    assert not [i.name for i in inits.values() if i.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.INT8)]
    assert res.report["tensorrt_compat"]["ok"] and res.report["greedy_generation"]["agrees"]
    assert res.report["onnx"]["kl"] < 1e-3   # FP16 activations only


def _infeasible_target(tmp_path, tiny):
    """A copy of orin whose memory leaves the fitted weights about a KiB less than their cheapest."""
    p = plan_memory(tiny.ckpt.raw_config, find_target("orin"), Fp16Config())
    folder, _ = _target(tmp_path, tiny.cheapest - 1 + p.kv_bytes + p.workspace_bytes + p.overhead_bytes + tiny.fixed
                        - GiB // 10**6)   # less a KiB: usable_gb is rounded through YAML
    return ["--target", "mine", "--targets-dir", folder]


# (id, args, message fragment); the model is qwen2-tiny unless the args name one
BAD = [
    ("context-without-fit", ["--context", "4096"], "--context applies to --fit only"),
    ("fit-bits-without-fit", ["--fit-bits", "5"], "--fit-bits applies to --fit only"),
    ("fit-and-method", ["--fit", "--method", "gptq"], "--method names another method"),
    ("fit-and-bits", ["--fit", "--bits", "4"], "--bits names another method"),
    ("fit-and-asym", ["--fit", "--asym"], "--fit with --asym"),
    ("fit-per-channel-int4", ["--fit", "--group-size", "-1"], "the fit's INT4 choice must be one TensorRT runs"),
    ("fit-bits-range", ["--fit", "--fit-bits", "3"], "--fit-bits 3.0 is outside 4..16"),
    ("fit-bits-infeasible", ["--fit", "--fit-bits", "4.2"],
     "the cheapest storage of every unit (INT4, INT8 embedding) needs"),
    ("target-infeasible", "target", "the cheapest storage of every unit (INT4, INT8 embedding) needs"),
    ("fit-check-truncated", ["--fit", "--check", "truncated"], "--fit measures every unit on the whole model"),
    ("fit-moe", ["--fit", "--model", reference.checkpoint_path(MOE_REFERENCE)],
     f"--fit does not take {MOE_REFERENCE}"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_fit_input(case, tmp_path, tiny):
    name, args, fragment = case
    if args == "target":
        args = ["--fit", *_infeasible_target(tmp_path, tiny)]
    if name == "fit-bits-infeasible":   # 4.2 bits is below the cheapest mix's
        assert int(4.2 * tiny.params / 8) < tiny.cheapest
    if "--model" not in args:
        args = [*args, "--model", tiny.path]
    out = tmp_path / "artifact"
    r = _cli(*args, "-o", out, "--no-latency", timeout=300)
    err = " ".join(r.stderr.split())
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert fragment in err, r.stderr
    assert "fix:" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()
    assert not list(tmp_path.glob(".*partial*")) and not list(tmp_path.glob(".*check-*")), "temporary folder left"
    if name == "target-infeasible":
        assert "on mine at context" in err and "the fitted weights may take" in err
    if name == "fit-bits-infeasible":
        assert f"{8 * tiny.cheapest / tiny.params:.3f} bits per weight" in err
