"""Power readers (INA3221 hwmon, tegrastats, NVML, RAPL) and the sampler. They live in
device/power.py because they run on the device too (shipped with every release)."""
from .device.power import (Ina3221Reader, NvmlReader, RaplReader, Sampler, TegrastatsReader,  # noqa: F401
                           find_reader, parse_tegrastats, tegrastats_total)
