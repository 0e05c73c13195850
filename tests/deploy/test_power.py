"""Power readers against sysfs trees laid out as the INA3221 hwmon driver and RAPL lay them out
(Linux Documentation/hwmon/ina3221.rst: in[123]_label, in[123]_input mV, curr[123]_input mA,
in7_label the sum channel), tegrastats lines, nvpmodel.conf, and NVML where a GPU exists."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from dsedge.deploy.device.bench import max_mode, nvpmodel_modes, platform_state
from dsedge.deploy.power import (Ina3221Reader, NvmlReader, RaplReader, Sampler, find_reader, parse_tegrastats,
                                 tegrastats_total)


def _hwmon(root: Path, addr: str, n: int, channels: dict[int, tuple[str, int, int]]) -> Path:
    """channels: {index: (label, mV, mA)}; also the shunt inputs and the sum channel."""
    hw = root / "sys/bus/i2c/drivers/ina3221" / addr / "hwmon" / f"hwmon{n}"
    hw.mkdir(parents=True)
    for i, (label, mv, ma) in channels.items():
        (hw / f"in{i}_label").write_text(label + "\n")
        (hw / f"in{i}_input").write_text(f"{mv}\n")
        (hw / f"curr{i}_input").write_text(f"{ma}\n")
        (hw / f"in{i}_enable").write_text("1\n")
        (hw / f"in{i + 3}_input").write_text("1234\n")          # shunt voltage, uV: not a rail
    (hw / "in7_label").write_text("sum of shunt voltages\n")
    (hw / "in7_input").write_text("9999\n")
    (hw / "curr4_input").write_text("9999\n")
    return hw


def agx_orin(root: Path) -> Path:
    hw = _hwmon(root, "1-0040", 1, {1: ("VDD_GPU_SOC", 5000, 2000), 2: ("VDD_CPU_CV", 5000, 400),
                                    3: ("VIN_SYS_5V0", 5000, 600)})
    _hwmon(root, "1-0041", 2, {1: ("VDDQ_VDD2_1V8AO", 1800, 100), 2: ("NC", 0, 0)})
    return hw


def test_ina3221_agx_orin_sums_its_rails(tmp_path):
    agx_orin(tmp_path)
    r = Ina3221Reader(str(tmp_path))
    names = [x.name for x in r.rails]
    assert names == ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"]    # NC and the sum skipped
    rails = r.rail_watts()
    assert rails["VDD_GPU_SOC"] == pytest.approx(10.0) and rails["VDDQ_VDD2_1V8AO"] == pytest.approx(0.18)
    assert r.sample() == pytest.approx(10.0 + 2.0 + 3.0 + 0.18)


def test_ina3221_orin_nx_uses_vdd_in(tmp_path):
    _hwmon(tmp_path, "1-0040", 1, {1: ("VDD_IN", 5000, 1500), 2: ("VDD_CPU_GPU_CV", 5000, 600), 3: ("VDD_SOC", 5000, 300)})
    r = Ina3221Reader(str(tmp_path))
    assert r.total_rails == ["VDD_IN"] and r.sample() == pytest.approx(7.5)
    assert find_reader(str(tmp_path)).name == "ina3221"


def test_disabled_channel_and_no_hwmon(tmp_path):
    hw = _hwmon(tmp_path, "1-0040", 1, {1: ("VDD_IN", 5000, 1000), 2: ("VDD_SOC", 5000, 300)})
    (hw / "in2_enable").write_text("0\n")
    assert [x.name for x in Ina3221Reader(str(tmp_path)).rails] == ["VDD_IN"]
    assert not Ina3221Reader(str(tmp_path / "empty")).available()
    assert find_reader(str(tmp_path / "empty")) is None


def test_sampler_integrates_changing_power(tmp_path):
    hw = agx_orin(tmp_path)
    (tmp_path / "sys/bus/i2c/drivers/ina3221/1-0041").rename(tmp_path / "gone")    # 15 W on 1-0040 only
    r = Ina3221Reader(str(tmp_path))
    with Sampler(r, interval=0.01) as s:
        t0 = s.mark()
        time.sleep(0.3)
        (hw / "curr1_input").write_text("4000\n")                                   # GPU rail 10 W -> 20 W
        t_mid = s.mark()
        time.sleep(0.3)
        t1 = s.mark()
    e1, e2 = s.energy_j(t0, t_mid), s.energy_j(t_mid, t1)
    assert e1 == pytest.approx(15 * (t_mid - t0), rel=0.1)
    assert e2 == pytest.approx(25 * (t1 - t_mid), rel=0.1)


def test_rapl_counter_deltas_and_wraparound(tmp_path):
    pkg = tmp_path / "sys/class/powercap/intel-rapl:0"
    sub = tmp_path / "sys/class/powercap/intel-rapl:0:0"     # a subdomain (part of the package): not added
    for d in (pkg, sub):
        d.mkdir(parents=True)
        (d / "max_energy_range_uj").write_text("1000000\n")
        (d / "energy_uj").write_text("900000\n")
    r = RaplReader(str(tmp_path))
    assert [Path(d).name for d, _ in r.domains] == ["intel-rapl:0"]
    assert r.sample() == 0
    (pkg / "energy_uj").write_text("950000\n")
    assert r.sample() == pytest.approx(0.05)
    (pkg / "energy_uj").write_text("100000\n")               # wrapped: +50000 to the top, +100000 after
    assert r.sample() == pytest.approx(0.2)


def test_tegrastats_lines():
    agx = ("11-23-2026 10:00:00 RAM 2048/62780MB (lfb 3x4MB) CPU [2%@729,0%@729] GR3D_FREQ 0% "
           "cpu@45.5C VDD_GPU_SOC 4388mW/4388mW VDD_CPU_CV 798mW/798mW VIN_SYS_5V0 3830mW/3830mW "
           "VDDQ_VDD2_1V8AO 502mW/502mW")
    rails = parse_tegrastats(agx)
    assert rails == {"VDD_GPU_SOC": 4.388, "VDD_CPU_CV": 0.798, "VIN_SYS_5V0": 3.83, "VDDQ_VDD2_1V8AO": 0.502}
    assert tegrastats_total(rails) == pytest.approx(4.388 + 0.798 + 3.83)
    nano = "RAM 3000/7620MB CPU [1%@1510] VDD_IN 5123mW/5000mW VDD_CPU_GPU_CV 600mW/610mW VDD_SOC 1400mW/1400mW"
    assert tegrastats_total(parse_tegrastats(nano)) == pytest.approx(5.123)
    assert tegrastats_total(parse_tegrastats("RAM 1/2MB")) is None


def test_nvpmodel_max_mode(tmp_path):
    agx = "< POWER_MODEL ID=0 NAME=MAXN >\n< POWER_MODEL ID=1 NAME=MODE_15W >\n< POWER_MODEL ID=2 NAME=MODE_30W >\n"
    assert nvpmodel_modes(agx) == {0: "MAXN", 1: "MODE_15W", 2: "MODE_30W"} and max_mode(nvpmodel_modes(agx)) == 0
    nano = "< POWER_MODEL ID=0 NAME=15W >\n< POWER_MODEL ID=1 NAME=25W >\n< POWER_MODEL ID=2 NAME=MAXN_SUPER >\n"
    assert max_mode(nvpmodel_modes(nano)) == 2
    assert max_mode(nvpmodel_modes("< POWER_MODEL ID=0 NAME=15W >\n< POWER_MODEL ID=1 NAME=7W >")) == 0
    gpu = tmp_path / "sys/devices/platform/17000000.gpu/devfreq/17000000.gpu"
    gpu.mkdir(parents=True)
    (gpu / "cur_freq").write_text("918000000\n")
    (gpu / "max_freq").write_text("1300500000\n")
    assert platform_state(str(tmp_path))["clocks"] == {"gpu_mhz": 918.0, "gpu_max_mhz": 1300.5}


def test_nvml_energy_counter():
    r = NvmlReader()
    if not r.available():
        pytest.skip("no NVIDIA GPU with NVML energy counters here (nvidia-ml-py finds no device)")
    first = r.sample()
    x = 0
    t = time.time()
    while time.time() - t < 0.5:
        x += 1
    assert first == 0 and r.sample() >= 0 and r.memory_used_bytes() > 0 and r.clocks()["gpu_mhz"] > 0


def test_a_window_between_two_marks_holds_both_marks_samples():
    """A decode window shorter than the sampling interval still has a sample at each end (the
    marks' own), so its energy is computed: 10 W constant over the window."""
    class Constant:
        kind, name = "power", "constant"

        def sample(self):
            return 10.0

    with Sampler(Constant(), interval=60.0) as s:     # the thread samples once, at the start
        t0 = s.mark()
        time.sleep(0.005)
        t1 = s.mark()
    inside = [t for t, _ in s.samples if t0 <= t <= t1]
    assert len(inside) == 2
    assert s.energy_j(t0, t1) == pytest.approx(10.0 * (t1 - t0))
