"""Energy and CO2 estimate of an answer, and how it was made.

Method: CPU seconds actually used (user + system) by this process and by the local servers it
started, times an average power per busy core, plus a per-token figure for LLM calls served
elsewhere. It ignores idle power, memory, storage, network and embodied emissions, so it is a
lower-bound order of magnitude, not a measurement.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass, field

from agents.schemas import Cost, LLMUsage


def _proc_cpu_seconds(pid: int) -> float:
    """CPU seconds of a live child (e.g. the STAC server), from /proc (Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            parts = fh.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(parts[11]) + int(parts[12])) / ticks
    except (OSError, IndexError, ValueError):
        return 0.0


def cpu_seconds(server_pids: tuple[int, ...] = ()) -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    return total + sum(_proc_cpu_seconds(p) for p in server_pids)


@dataclass
class CostMeter:
    watts_per_core: float
    grid_gco2_per_kwh: float
    server_pids: tuple[int, ...] = ()
    start_cpu: float = field(default=0.0)

    def start(self) -> None:
        self.start_cpu = cpu_seconds(self.server_pids)

    def finish(self, seconds: float, steps: dict[str, float], llm: LLMUsage) -> Cost:
        used = max(0.0, cpu_seconds(self.server_pids) - self.start_cpu)
        energy_wh = used * self.watts_per_core / 3600.0
        co2 = energy_wh / 1000.0 * self.grid_gco2_per_kwh
        method = (
            f"{used:.2f} CPU-seconds (user+system, this process and its local servers) x "
            f"{self.watts_per_core:g} W per busy core = {energy_wh:.4f} Wh; x "
            f"{self.grid_gco2_per_kwh:g} gCO2e/kWh grid intensity. Excludes idle power, memory, "
            "network and embodied emissions; LLM tokens counted but served locally on the same CPU."
        )
        return Cost(
            seconds=round(seconds, 3),
            steps={k: round(v, 3) for k, v in steps.items()},
            llm=llm,
            energy_wh=round(energy_wh, 5),
            co2e_g=round(co2, 5),
            method=method,
        )
