"""`dsedge bench`: run device/bench.py where the engine runs (here, or on a device over SSH),
then record the figures in the artifact: bench.json, report.json's `measured` section, the
budget rows it measured (source "measured", pass / fail), report.md re-rendered, manifest.json's
file hashes refreshed (so the artifact still verifies and flashes).

With --accuracy, also device/accuracy.py there: the build's eval windows through the same
runtime, scored here against the FP16 reference summary the build stored
(dsedge.check.device_accuracy) -> report.json `measured.accuracy`."""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from .errors import DeviceError
from .releases import artifact_id, file_sha256, read_manifest
from .remote import last_json


@dataclass
class BenchOptions:
    runtime: str = "auto"
    prompt_tokens: int = 128
    decode_tokens: int = 64
    runs: int = 5
    warmup: int = 2
    power_root: str = "/"
    accuracy_level: int = 1     # onnxruntime's MatMulNBits accuracy level (4: INT8 activations)
    graph: str = "auto"         # this host, onnxruntime: the host graph where there is one (run.open_on_host)
    accuracy: bool = False      # also the eval windows through the runtime, scored against the FP16 reference


def _open_device(folder: Path, target, ssh):
    """-> (device side, release id) once the artifact's release is on the device."""
    from .fleet import device_side

    rid = artifact_id(folder)
    dev = device_side(target, ssh)
    info = dev.call("releases", what="listing releases")
    if rid not in info.get("releases", []):
        raise UsageError(f"{target.name}: this artifact (release {rid}) is not on the device "
                         f"(active: {info.get('current')})", f"flash it first: dsedge flash {folder} --device {target.address}")
    return dev, rid


def _device_bench(folder: Path, opts: BenchOptions, target, dev, rid: str) -> dict:
    res = dev.call("run", rid, "bench", "--runtime", opts.runtime, "--prompt-tokens", str(opts.prompt_tokens),
                   "--decode-tokens", str(opts.decode_tokens), "--runs", str(opts.runs), "--warmup", str(opts.warmup),
                   "--power-root", opts.power_root, *(("--accuracy-level", str(opts.accuracy_level))
                                                      if opts.accuracy_level != 1 else ()),
                   what="the benchmark", timeout=None)
    if "ttft_ms" not in res:
        raise DeviceError(f"{target.name}: the benchmark printed no result", "run it there by hand: "
                          f"cd <root>/releases/{rid} && python3 -m dsedge_device bench")
    res["where"] = f"{target.name} ({res.get('platform', {}).get('hostname') or target.address.host}), release {rid}"
    return res


def _device_accuracy(folder: Path, opts: BenchOptions, target, dev, rid: str, hashes: dict) -> dict:
    """device/accuracy.py in the release; it checks every file it reads against the release's
    manifest and against `hashes` (this artifact's), and refuses (exit 6) on a mismatch."""
    level = ("--accuracy-level", str(opts.accuracy_level)) if opts.accuracy_level != 1 else ()
    given = [a for name, sha in hashes.items() for a in ("--sha256", f"{name}={sha}")]
    r = dev.call("run", rid, "accuracy", "--runtime", opts.runtime, *level, *given, timeout=None, check=False)
    err = r.stderr.decode(errors="replace").strip()[-1500:]
    fix = f"flash it again: dsedge flash {folder} --device {target.address} (re-sends a file that does not match)"
    if r.returncode == 6:
        raise DeviceError(f"{target.name}: the device refused the accuracy run, nothing was measured: {err}", fix)
    res = last_json(r.stdout) if r.returncode == 0 else {}
    if "arrays" not in res:
        raise DeviceError(f"{target.name}: the accuracy run failed on the device (exit {r.returncode}): "
                          f"{err or '(no message)'}", "run it there by hand: "
                          f"cd <root>/releases/{rid} && python3 -m dsedge_device accuracy")
    res["where"] = f"{target.name} ({target.address.host}), release {rid}"
    return res


def _local_bench(folder: Path, opts: BenchOptions) -> dict:
    import platform

    from .host import open_on_host
    from .device.bench import run_bench

    if opts.runtime == "tensorrt" and not (folder / "model.engine").is_file():
        raise UsageError(f"{folder} has no model.engine", "build it here with `dsedge engine build`, or pass "
                         "--runtime onnxruntime")
    dec, graph = open_on_host(folder, opts.runtime, opts.accuracy_level, opts.graph)
    res = run_bench(folder, opts.runtime, opts.prompt_tokens, opts.decode_tokens, opts.runs, opts.warmup, opts.power_root,
                    accuracy_level=opts.accuracy_level, decoder=dec)
    res["graph"] = graph
    res["where"] = f"this host ({platform.node()}, {platform.machine()})"
    return res


def _local_accuracy(folder: Path, opts: BenchOptions, hashes: dict) -> dict:
    """The same device/accuracy.py here, over model.onnx or model.engine (never the host graph:
    the accuracy is that of the graph a device runs)."""
    import platform

    from .device.accuracy import Refused, run_accuracy
    from .device.runtime import ENGINE_FILE, pick_runtime

    try:
        res = run_accuracy(folder, opts.runtime, opts.accuracy_level, hashes)
    except Refused as e:
        raise UsageError(f"{folder}: {e}", "rebuild the artifact (dsedge build)") from None
    res["graph"] = ENGINE_FILE if pick_runtime(folder, opts.runtime) == "tensorrt" else "model.onnx (the standard graph)"
    res["where"] = f"this host ({platform.node()}, {platform.machine()})"
    return res


def accuracy_inputs(folder: Path) -> tuple[dict, dict]:
    """The artifact's FP16-reference summary, its bytes checked against the manifest, and
    {file: sha256} of the accuracy files (what the device must find). UsageError (exit 2) naming
    why an artifact has none: checked before anything runs."""
    from ..check.device_accuracy import FILES, REFERENCE_FILE, WINDOWS_FILE, load_reference, read_verified

    manifest = read_manifest(folder)
    files = manifest.get("files") or {}
    if any(f not in files for f in FILES):
        report = _report(folder)
        why = (report.get("accuracy_skipped") or report.get("accuracy_note")
               or "it was built by a dsedge that did not store one")
        raise UsageError(f"{folder} has no FP16 reference for an accuracy run ({', '.join(FILES)} are not in its "
                         f"manifest): {why}",
                         "rebuild it with a full check (dsedge build ... --check full, on a host with the memory for "
                         "the whole model in PyTorch; an imported checkpoint also needs --reference ORIGINAL), "
                         "flash it, then run dsedge bench --accuracy")
    read_verified(folder, WINDOWS_FILE, manifest)
    ref = load_reference(read_verified(folder, REFERENCE_FILE, manifest))
    return ref, {f: files[f]["sha256"] for f in FILES}


def _report(folder: Path) -> dict:
    rp = folder / "report.json"
    try:
        return json.loads(rp.read_text()) if rp.is_file() else {}
    except ValueError:
        return {}


def score_accuracy(folder: Path, ref: dict, res: dict, device: bool) -> dict:
    """The device's answers (res["arrays"]) scored against the reference -> measured.accuracy."""
    from ..check.device_accuracy import score
    from .device.accuracy import decode_arrays

    try:
        figures = score(ref, decode_arrays(res.pop("arrays")))
    except Exception as e:      # bytes from the device: any malformation is its answer, reported as such
        raise DeviceError(f"{res['where']}: the accuracy run sent back figures that cannot be used ({e})",
                          "flash the artifact again and rerun dsedge bench --accuracy") from None
    report = _report(folder)
    build = {k: (report.get("onnx") or {}).get(k) for k in ("perplexity", "kl", "top1_agreement")}
    build["ppl_change_pct"] = report.get("ppl_change_pct")
    return {"source": "measured on device" if device else "measured on this host", **figures,
            **{k: res[k] for k in ("where", "runtime", "windows", "window_tokens", "seconds", "tokens_per_s")},
            **{k: res[k] for k in ("onnxruntime_accuracy_level", "graph") if k in res},
            "build": {**build, "how": "dsedge build: onnxruntime CPU on the host, full KL over the vocabulary"}}


# budget metric -> (the bench figure, unit conversion)
_MEASURED = {
    "ttft_ms": lambda b: b["ttft_ms"]["median"],
    "decode_tokens_per_s": lambda b: b["decode_tokens_per_s"],
    "peak_memory_gb": lambda b: b["peak_memory_gb"],
    "avg_power_w": lambda b: (b.get("power") or {}).get("avg_w"),
}


def mark_budgets(rows: list[dict], bench: dict, accuracy: dict | None = None) -> list[str]:
    """Budget rows whose metric the bench measured become measured, with pass / fail; with
    `accuracy`, the perplexity-increase budget takes the device's figure."""
    marked = []
    for row in rows:
        get = _MEASURED.get(row.get("metric"))
        value = get(bench) if get else None
        how = f"dsedge bench on {bench['where']} ({bench['runtime']}, median of {bench['ttft_ms']['n']} runs)" \
            if row.get("metric") == "ttft_ms" else f"dsedge bench on {bench['where']} ({bench['runtime']})"
        if accuracy and row.get("metric") == "max_ppl_increase_pct":
            value = accuracy["ppl_change_pct"]
            how = f"dsedge bench --accuracy on {accuracy['where']} ({accuracy['runtime']})"
        if value is None:
            continue
        row.update(value=round(float(value), 3), source="measured", how=how)
        if row.get("budget") is None:
            row["status"] = "no budget"
        else:
            ok = value <= row["budget"] if row.get("limit") == "max" else value >= row["budget"]
            row["status"] = "pass" if ok else "fail"
        marked.append(row["metric"])
    return marked


def _write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def record(folder: Path, bench: dict, accuracy: dict | None = None) -> dict:
    """Write bench.json and the report's measured figures (bench, and accuracy when measured);
    refresh the manifest's hashes."""
    from ..report.render import write_reports

    rp = folder / "report.json"
    report = json.loads(rp.read_text()) if rp.is_file() else {}
    _write_json_atomic(folder / "bench.json", bench)
    measured = report.setdefault("measured", {})
    measured["bench"] = {**bench, "measured_unix": int(time.time())}
    if accuracy is not None:
        measured["accuracy"] = {**accuracy, "measured_unix": int(time.time())}
    marked = mark_budgets(report.get("budgets") or [], bench, accuracy)
    measured["budgets"] = marked
    if report.get("budgets") is not None:
        report["budgets_missed"] = [r["metric"] for r in report["budgets"] if r.get("status") == "fail"]
    write_reports(folder, report)
    manifest = read_manifest(folder)
    manifest["files"] = {str(p.relative_to(folder)): {"sha256": file_sha256(p), "bytes": p.stat().st_size}
                         for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "manifest.json"
                         and not p.name.startswith(".")}
    _write_json_atomic(folder / "manifest.json", manifest)
    return report


def run(folder: Path, opts: BenchOptions, target=None, ssh=None, write: bool = True) -> dict:
    """-> the bench dict; with opts.accuracy, its "accuracy" holds measured.accuracy. Nothing is
    written unless every part succeeded."""
    folder = Path(folder)
    read_manifest(folder)
    ref, hashes = accuracy_inputs(folder) if opts.accuracy else (None, None)
    acc = None
    if target is not None:
        dev, rid = _open_device(folder, target, ssh)
        bench = _device_bench(folder, opts, target, dev, rid)
        if opts.accuracy:
            acc = score_accuracy(folder, ref, _device_accuracy(folder, opts, target, dev, rid, hashes), True)
    else:
        if opts.accuracy and opts.runtime == "tensorrt" and not (folder / "model.engine").is_file():
            raise UsageError(f"{folder} has no model.engine", "build it here with `dsedge engine build`, or pass "
                             "--runtime onnxruntime")
        bench = _local_bench(folder, opts)
        if opts.accuracy:
            acc = score_accuracy(folder, ref, _local_accuracy(folder, opts, hashes), False)
    if write:
        record(folder, bench, acc)
    return bench if acc is None else {**bench, "accuracy": acc}
