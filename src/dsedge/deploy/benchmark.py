"""`dsedge bench`: run device/bench.py where the engine runs (here, or on a device over SSH),
then record the figures in the artifact: bench.json, report.json's `measured` section, the
budget rows it measured (source "measured", pass / fail), report.md re-rendered, manifest.json's
file hashes refreshed (so the artifact still verifies and flashes)."""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from .errors import DeviceError
from .releases import artifact_id, file_sha256, read_manifest


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


def _device_bench(folder: Path, opts: BenchOptions, target, ssh) -> dict:
    from .fleet import device_side

    rid = artifact_id(folder)
    dev = device_side(target, ssh)
    info = dev.call("releases", what="listing releases")
    if rid not in info.get("releases", []):
        raise UsageError(f"{target.name}: this artifact (release {rid}) is not on the device "
                         f"(active: {info.get('current')})", f"flash it first: dsedge flash {folder} --device {target.address}")
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


# budget metric -> (the bench figure, unit conversion)
_MEASURED = {
    "ttft_ms": lambda b: b["ttft_ms"]["median"],
    "decode_tokens_per_s": lambda b: b["decode_tokens_per_s"],
    "peak_memory_gb": lambda b: b["peak_memory_gb"],
    "avg_power_w": lambda b: (b.get("power") or {}).get("avg_w"),
}


def mark_budgets(rows: list[dict], bench: dict) -> list[str]:
    """Budget rows whose metric the bench measured become measured, with pass / fail."""
    marked = []
    for row in rows:
        get = _MEASURED.get(row.get("metric"))
        value = get(bench) if get else None
        if value is None:
            continue
        row.update(value=round(float(value), 3), source="measured", how=f"dsedge bench on {bench['where']} "
                   f"({bench['runtime']}, median of {bench['ttft_ms']['n']} runs)" if row["metric"] == "ttft_ms"
                   else f"dsedge bench on {bench['where']} ({bench['runtime']})")
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


def record(folder: Path, bench: dict) -> dict:
    """Write bench.json and the report's measured figures; refresh the manifest's hashes."""
    from ..report.render import write_reports

    rp = folder / "report.json"
    report = json.loads(rp.read_text()) if rp.is_file() else {}
    _write_json_atomic(folder / "bench.json", bench)
    measured = report.setdefault("measured", {})
    measured["bench"] = {**bench, "measured_unix": int(time.time())}
    marked = mark_budgets(report.get("budgets") or [], bench)
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
    folder = Path(folder)
    read_manifest(folder)
    bench = _device_bench(folder, opts, target, ssh) if target is not None else _local_bench(folder, opts)
    if write:
        record(folder, bench)
    return bench
