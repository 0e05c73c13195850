"""Power and energy readers, each with a `root` so tests can point it at a tmp sysfs tree.

Sources (see also shared/notes/targets-facts.md):
- INA3221 through hwmon (Linux Documentation/hwmon/ina3221.rst): in[123]_label, in[123]_input
  bus voltage (mV), curr[123]_input current (mA); in7_label / curr4_input are the sum channel,
  skipped, as are channels labelled NC. AGX Orin rails: VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0
  (no VDD_IN: the board total is their sum); Orin NX / Nano: VDD_IN is the module input, the
  other rails are parts of it (jetson_stats jtop/core/power.py does the same).
- tegrastats: `<RAIL> <cur>mW/<avg>mW` per interval.
- NVML: nvmlDeviceGetTotalEnergyConsumption, mJ since the driver loaded (Volta and later); deltas
  of that counter, not single nvmlDeviceGetPowerUsage samples (a 1-second average on Ampere+).
- RAPL: /sys/class/powercap/intel-rapl:N/energy_uj (package domains only; subdomains such as
  intel-rapl:0:0 are parts of them), wrapping at max_energy_range_uj.
"""
from __future__ import annotations

import glob
import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field

INA3221_GLOB = "sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*"
RAPL_GLOB = "sys/class/powercap/intel-rapl:*"
_SKIP_LABELS = {"NC", "SUM OF SHUNT VOLTAGES"}


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


@dataclass
class Rail:
    name: str
    voltage_path: str
    current_path: str

    def watts(self) -> float | None:
        v, i = _read(self.voltage_path), _read(self.current_path)
        if v is None or i is None:
            return None
        return float(v) * float(i) / 1e6   # mV x mA -> W


class Ina3221Reader:
    """Jetson rails. kind = "power" (samples in W, integrated over time)."""
    kind = "power"
    name = "ina3221"

    def __init__(self, root: str = "/"):
        self.rails: list[Rail] = []
        for hw in sorted(glob.glob(os.path.join(root, INA3221_GLOB))):
            for label_path in sorted(glob.glob(os.path.join(hw, "in*_label"))):
                m = re.fullmatch(r"in(\d+)_label", os.path.basename(label_path))
                n = int(m.group(1)) if m else 0
                label = _read(label_path) or ""
                if n not in (1, 2, 3) or label.upper() in _SKIP_LABELS or label.upper().startswith("SUM"):
                    continue
                if _read(os.path.join(hw, f"in{n}_enable")) == "0":
                    continue
                self.rails.append(Rail(label, os.path.join(hw, f"in{n}_input"), os.path.join(hw, f"curr{n}_input")))
        names = [r.name for r in self.rails]
        # VDD_IN is the module's input (Orin NX / Nano): the total; otherwise (AGX Orin) the sum.
        self.total_rails = ["VDD_IN"] if "VDD_IN" in names else names

    def available(self) -> bool:
        return bool(self.rails)

    def rail_watts(self) -> dict[str, float]:
        out = {}
        for r in self.rails:
            w = r.watts()
            if w is not None:
                out[r.name] = w
        return out

    def sample(self) -> float | None:
        rails = self.rail_watts()
        vals = [rails[n] for n in self.total_rails if n in rails]
        return sum(vals) if vals else None


_TEGRA_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]+) (\d+)mW/(\d+)mW")


def parse_tegrastats(line: str) -> dict[str, float]:
    """One tegrastats line -> {rail: current watts}."""
    return {m.group(1): int(m.group(2)) / 1e3 for m in _TEGRA_RAIL.finditer(line)}


def tegrastats_total(rails: dict[str, float]) -> float | None:
    if not rails:
        return None
    if "VDD_IN" in rails:
        return rails["VDD_IN"]
    return sum(v for k, v in rails.items() if not k.startswith("VDDQ"))  # AGX Orin: the main rails


class TegrastatsReader:
    """tegrastats --interval MS in a child process; the latest line is the current sample."""
    kind = "power"
    name = "tegrastats"

    def __init__(self, command: str = "tegrastats", interval_ms: int = 100):
        self.command, self.interval_ms = command, interval_ms
        self.proc = None
        self.latest: float | None = None

    def available(self) -> bool:
        from shutil import which
        return which(self.command) is not None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.command, "--interval", str(self.interval_ms)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            total = tegrastats_total(parse_tegrastats(line))
            if total is not None:
                self.latest = total

    def sample(self) -> float | None:
        return self.latest

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=5)


class RaplReader:
    """x86 package energy. kind = "energy" (a cumulative counter in J)."""
    kind = "energy"
    name = "rapl"

    def __init__(self, root: str = "/"):
        self.domains = []
        for d in sorted(glob.glob(os.path.join(root, RAPL_GLOB))):
            if re.search(r"intel-rapl:\d+$", d) and _read(os.path.join(d, "energy_uj")) is not None:
                self.domains.append((d, int(_read(os.path.join(d, "max_energy_range_uj")) or 0)))
        self.last: list[int] = []
        self.total_uj = 0

    def available(self) -> bool:
        return bool(self.domains)

    def sample(self) -> float:
        now = [int(_read(os.path.join(d, "energy_uj")) or 0) for d, _ in self.domains]
        if self.last:
            for (d, wrap), a, b in zip(self.domains, self.last, now):
                self.total_uj += b - a if b >= a else b + wrap - a   # the counter wrapped
        self.last = now
        return self.total_uj / 1e6


class NvmlReader:
    """Discrete NVIDIA GPU energy from nvidia-ml-py. kind = "energy" (J since the first sample)."""
    kind = "energy"
    name = "nvml"

    def __init__(self, index: int = 0):
        self.index, self.handle, self.first = index, None, None
        try:
            import pynvml
            pynvml.nvmlInit()
            self.nvml = pynvml
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)   # Volta+; raises otherwise
        except Exception:
            self.handle = None

    def available(self) -> bool:
        return self.handle is not None

    def sample(self) -> float:
        mj = self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
        if self.first is None:
            self.first = mj
        return (mj - self.first) / 1e3

    def memory_used_bytes(self) -> int:
        return int(self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used)

    def clocks(self) -> dict:
        n = self.nvml
        return {"gpu_mhz": n.nvmlDeviceGetClockInfo(self.handle, n.NVML_CLOCK_SM),
                "mem_mhz": n.nvmlDeviceGetClockInfo(self.handle, n.NVML_CLOCK_MEM),
                "gpu_name": n.nvmlDeviceGetName(self.handle)}


def find_reader(root: str = "/", nvml: bool = True):
    """The best power source this machine exposes, or None: INA3221 (Jetson), NVML (discrete
    GPU), tegrastats, RAPL (x86)."""
    ina = Ina3221Reader(root)
    if ina.available():
        return ina
    if nvml and root == "/":
        r = NvmlReader()
        if r.available():
            return r
    if root == "/":
        t = TegrastatsReader()
        if t.available():
            return t
    rapl = RaplReader(root)
    if rapl.available():
        return rapl
    return None


@dataclass
class Sampler:
    """Samples a reader every `interval` s in a thread; energy over any [t0, t1] window:
    counter deltas for energy readers, trapezoids of W samples for power readers."""
    reader: object
    interval: float = 0.05
    samples: list = field(default_factory=list)        # (perf_counter time, W or J)
    memory: object = None                               # optional callable -> bytes in use
    peak_memory: int = 0

    def _take(self) -> float:
        """One sample; -> its timestamp."""
        v = self.reader.sample()
        t = time.perf_counter()
        if v is not None:
            self.samples.append((t, float(v)))
        if self.memory:
            self.peak_memory = max(self.peak_memory, int(self.memory() or 0))
        return t

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._take()
            self._stop.wait(self.interval)

    def __enter__(self):
        if hasattr(self.reader, "start"):
            self.reader.start()
            time.sleep(self.interval * 2)
        self._stop = threading.Event()
        self._take()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._take()
        if hasattr(self.reader, "stop"):
            self.reader.stop()
        return False

    def mark(self) -> float:
        """A window boundary: samples now, so short windows have points on both ends. -> the
        sample's own timestamp (a time taken after it would leave the window's first sample out)."""
        return self._take()

    def energy_j(self, t0: float, t1: float) -> float | None:
        pts = [(t, v) for t, v in self.samples if t0 <= t <= t1]
        if len(pts) < 2:
            return None
        if self.reader.kind == "energy":
            return pts[-1][1] - pts[0][1]
        return sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in zip(pts, pts[1:]))
