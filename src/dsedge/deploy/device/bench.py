"""On-device benchmark: time to first token and per-token decode latency (warm-up, median, p90,
p99), peak memory, and power / energy per token sampled during the timed runs."""
from __future__ import annotations

import glob
import json
import os
import re
import resource
import subprocess
import time
from pathlib import Path

from .power import Sampler, find_reader
from .runtime import open_decoder

GiB = 1024 ** 3


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _stats(ms: list[float]) -> dict:
    import numpy as np
    a = np.asarray(ms)
    return {"median": float(np.median(a)), "p90": float(np.percentile(a, 90)), "p99": float(np.percentile(a, 99)),
            "mean": float(a.mean()), "n": int(a.size)}


def nvpmodel_modes(conf_text: str) -> dict[int, str]:
    """/etc/nvpmodel.conf's `< POWER_MODEL ID=0 NAME=MAXN >` lines -> {0: "MAXN"}."""
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=(\S+?)\s*>", conf_text)}


def max_mode(modes: dict[int, str]) -> int | None:
    """The highest-power mode: a MAXN* mode if the board has one (AGX Orin: MAXN, Orin Nano on
    JetPack 6.2: MAXN_SUPER), else the one with the most watts in its name."""
    if not modes:
        return None
    maxn = [i for i, n in modes.items() if n.upper().startswith("MAXN")]
    if maxn:
        return maxn[-1]
    watts = {i: int(m.group(1)) for i, n in modes.items() if (m := re.match(r"(\d+)W", n.upper()))}
    return max(watts, key=watts.get) if watts else None


def platform_state(root: str = "/") -> dict:
    """Power mode and clocks, where readable (Jetson sysfs paths; NVML covers discrete GPUs)."""
    out: dict = {"warnings": []}
    try:
        q = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=10).stdout if root == "/" else ""
    except (OSError, subprocess.SubprocessError):
        q = ""
    lines = [l.strip() for l in q.splitlines() if l.strip()]
    name = next((l.split(":", 1)[1].strip() for l in lines if l.startswith("NV Power Mode")), None)
    mode_id = next((int(l) for l in lines if l.isdigit()), None)
    if name is not None:
        modes = nvpmodel_modes(_read(os.path.join(root, "etc/nvpmodel.conf")) or "")
        best = max_mode(modes)
        out["power_mode"] = {"name": name, "id": mode_id, "max_id": best, "max_name": modes.get(best)}
        if best is not None and mode_id != best:
            out["warnings"].append(f"the Jetson runs power mode {name} (id {mode_id}), not its max mode "
                                   f"{modes[best]} (id {best}): `sudo nvpmodel -m {best} && sudo jetson_clocks` "
                                   "before benchmarking")
    clocks = {}
    gpu = sorted(glob.glob(os.path.join(root, "sys/devices/platform/*gpu*/devfreq/*/cur_freq"))
                 + glob.glob(os.path.join(root, "sys/devices/platform/bus@0/*gpu*/devfreq/*/cur_freq")))
    if gpu and _read(gpu[0]):
        clocks["gpu_mhz"] = int(_read(gpu[0])) / 1e6
        mx = _read(gpu[0].replace("cur_freq", "max_freq"))
        if mx:
            clocks["gpu_max_mhz"] = int(mx) / 1e6
    cpus = [int(v) for p in sorted(glob.glob(os.path.join(root, "sys/devices/system/cpu/cpu*/cpufreq/scaling_cur_freq")))
            if (v := _read(p))]
    if cpus:
        clocks["cpu_mhz_max"] = max(cpus) / 1e3
    emc = _read(os.path.join(root, "sys/kernel/debug/bpmp/debug/clk/emc/rate"))
    if emc:
        clocks["emc_mhz"] = int(emc) / 1e6
    out["clocks"] = clocks
    return out


def _system_used() -> int:
    info = {}
    for line in open("/proc/meminfo"):
        k, v = line.split(":", 1)
        info[k] = int(v.split()[0]) * 1024
    return info.get("MemTotal", 0) - info.get("MemAvailable", 0)


def run_bench(folder, runtime: str = "auto", prompt_tokens: int = 128, decode_tokens: int = 64,
              runs: int = 5, warmup: int = 2, power_root: str = "/", interval: float = 0.02,
              accuracy_level: int = 1, decoder=None) -> dict:
    """decoder: an opened one (the host's host graph), else open_decoder(folder, runtime)."""
    import numpy as np

    folder = Path(folder)
    vocab = json.loads((folder / "config.json").read_text()).get("vocab_size", 1000)
    base_used = _system_used()
    dec = decoder or open_decoder(folder, runtime, accuracy_level)
    ids = np.random.default_rng(0).integers(0, vocab, (1, prompt_tokens), dtype=np.int64)

    def one(mark=None):
        """-> TTFT (s), decode step times (s), the decode window's start (a power sample, or None)."""
        t0 = time.perf_counter()
        logits, past = dec.run(ids)
        tok = int(logits.argmax())
        ttft = time.perf_counter() - t0
        # a power sample where decoding starts: a window of 8 x 2 ms steps is shorter than the
        # sampling interval and would otherwise hold a single sample (no energy)
        t_decode = mark() if mark else None
        steps = []
        for _ in range(decode_tokens):
            t = time.perf_counter()
            logits, past = dec.run(np.asarray([[tok]], np.int64), past)
            tok = int(logits.argmax())
            steps.append(time.perf_counter() - t)
        dec.release(past)
        return ttft, steps, t_decode

    for _ in range(warmup):
        one()
    reader = find_reader(power_root)
    # Device memory: NVML on a discrete GPU; on a Jetson (unified memory) the system's memory in
    # use above the start; elsewhere only this process's peak RSS (other processes' memory on a
    # shared host is not ours).
    on_jetson = os.path.exists("/etc/nv_tegra_release") or (reader is not None and reader.name in ("ina3221", "tegrastats"))
    memory = getattr(reader, "memory_used_bytes", None) or (_system_used if on_jetson else None)
    ttfts, steps, windows = [], [], []
    sampler = Sampler(reader if reader else _NoPower(), interval=interval, memory=memory)
    with sampler:
        t_start = sampler.mark()
        for _ in range(runs):
            ttft, s, t_decode = one(sampler.mark)
            windows.append((t_decode, sampler.mark()))
            ttfts.append(ttft * 1e3)
            steps += [x * 1e3 for x in s]
        t_stop = sampler.mark()
    dec_ms = _stats(steps)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024        # Linux: KiB
    device_peak = sampler.peak_memory - (0 if reader and reader.name == "nvml" else base_used) if memory else 0
    res = {"runtime": dec.name, "prompt_tokens": prompt_tokens, "decode_tokens": decode_tokens, "runs": runs,
           "warmup": warmup, "ttft_ms": _stats(ttfts), "decode_ms": dec_ms,
           "decode_tokens_per_s": 1e3 / dec_ms["median"],
           "peak_rss_gb": rss / GiB, "peak_memory_gb": max(rss, device_peak) / GiB,
           "memory_source": "NVML device memory" if reader and reader.name == "nvml"
           else "system memory in use above the start (unified memory)" if memory else "process peak RSS",
           "power": None}
    if dec.name == "onnxruntime":
        res["onnxruntime_accuracy_level"] = dec.accuracy_level
    if reader is not None:
        total = _energy(sampler, t_start, t_stop)
        decode = [e for w in windows if (e := _energy(sampler, *w)) is not None]
        res["power"] = {"source": reader.name, "interval_s": interval, "samples": len(sampler.samples),
                        "avg_w": total / (t_stop - t_start) if total is not None else None,
                        "energy_j": total,
                        "decode_j_per_token": sum(decode) / (len(decode) * decode_tokens) if decode else None,
                        "rails": getattr(reader, "total_rails", None)}
    res["platform"] = platform_state(power_root)
    if reader is None:
        res["platform"]["warnings"].append("no power source readable here (INA3221 hwmon, NVML, tegrastats, RAPL): "
                                           "latency only")
    return res


class _NoPower:
    kind, name = "power", "none"

    def sample(self):
        return None


def _energy(sampler, t0, t1):
    """Energy over [t0, t1], scaled from the samples inside it to the whole window."""
    pts = [t for t, _ in sampler.samples if t0 <= t <= t1]
    e = sampler.energy_j(t0, t1)
    if e is None or len(pts) < 2 or pts[-1] <= pts[0]:
        return None
    return e * (t1 - t0) / (pts[-1] - pts[0])
