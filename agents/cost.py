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
    _start_server: dict[int, float] = field(default_factory=dict)

    def start(self, server_pids: tuple[int, ...] = ()) -> None:
        """Note the CPU time used so far, by this process and by servers already running
        (a long-lived LLM server's earlier questions are not this answer's cost)."""
        self.start_cpu = cpu_seconds()
        self._start_server = {p: _proc_cpu_seconds(p) for p in server_pids}

    def finish(
        self,
        seconds: float,
        steps: dict[str, float],
        llm: LLMUsage,
        remote_tokens: int = 0,
        remote_wh_per_1k_tokens: float = 0.0,
    ) -> Cost:
        # Servers started during the run count from zero.
        servers = sum(
            _proc_cpu_seconds(p) - self._start_server.get(p, 0.0) for p in self.server_pids
        )
        used = max(0.0, cpu_seconds() - self.start_cpu + servers)
        local_wh = used * self.watts_per_core / 3600.0
        remote_wh = remote_tokens / 1000.0 * remote_wh_per_1k_tokens
        energy_wh = local_wh + remote_wh
        co2 = energy_wh / 1000.0 * self.grid_gco2_per_kwh
        method = (
            f"{used:.2f} CPU-seconds (user+system, this process and its local servers, the "
            f"embedded LLM included) x {self.watts_per_core:g} W per busy core = {local_wh:.4f} Wh"
        )
        if remote_tokens:
            method += (
                f"; plus {remote_tokens} tokens on a remote LLM server x "
                f"{remote_wh_per_1k_tokens:g} Wh per 1000 tokens = {remote_wh:.4f} Wh"
            )
        method += (
            f"; x {self.grid_gco2_per_kwh:g} gCO2e/kWh grid intensity. Excludes idle power, "
            "memory, network and embodied emissions: a lower bound, not a measurement."
        )
        return Cost(
            seconds=round(seconds, 3),
            steps={k: round(v, 3) for k, v in steps.items()},
            llm=llm,
            energy_wh=round(energy_wh, 5),
            co2e_g=round(co2, 5),
            method=method,
        )
