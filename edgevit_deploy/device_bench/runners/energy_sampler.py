"""Battery sampling around one Android run, with the per-device idle baseline it reuses."""

from __future__ import annotations

import time
from typing import Any

from ..types import Transport
from .config import RunnerConfig

_IDLE_CACHE: dict[str, tuple[float, Any]] = {}  # device id -> (monotonic time, idle PowerReading)


class EnergySampler:
    """Battery sampling around one run (a no-op when energy is off or the device has no gauge)."""

    def __init__(
        self,
        config: RunnerConfig,
        transport: Transport | None = None,
        supply: Any = None,
        idle: Any = None,
        log_path: str = "",
    ):
        self.config = config
        self.transport = transport
        self.supply = supply
        self.idle = idle
        self.log_path = log_path

    @classmethod
    def start(cls, config: RunnerConfig, transport: Transport, scratch: str, notes: list[str]) -> EnergySampler:
        from .. import energy

        if not config.energy:
            return cls(config)
        supply = energy.find_battery(transport)
        if supply is None:
            notes.append("energy: this device exposes no battery current_now/voltage_now")
            return cls(config)
        if supply.status.lower() == "charging":
            notes.append("energy: the battery reports Charging")
        cached = _IDLE_CACHE.get(transport.device_id)
        if cached is not None and time.monotonic() - cached[0] < config.energy_idle_max_age_s:
            idle = cached[1]
        else:
            idle = energy.measure_idle(transport, supply, transport.work_dir, cls.energy_config(config))
            _IDLE_CACHE[transport.device_id] = (time.monotonic(), idle)
        return cls(config, transport, supply, idle, f"{scratch}/power.log")

    @staticmethod
    def energy_config(config: RunnerConfig) -> Any:
        from .. import energy

        return energy.EnergyConfig(
            config.current_unit, config.voltage_unit, config.discharge_sign, idle_s=config.energy_idle_s
        )

    def wrap(self, command: str) -> str:
        from .. import energy

        if self.supply is None:
            return command
        return energy.wrap_with_sampler(command, self.supply, self.log_path, self.energy_config(self.config).interval_s)

    def finish(self, latency_ms: float | None, charging: bool, notes: list[str]) -> dict[str, Any]:
        from .. import energy

        if not self.config.energy:
            return {}
        if self.supply is None or self.transport is None:
            return {"energy_note": "; ".join(n for n in notes if n.startswith("energy")) or "no energy reading"}
        charging = charging or self.supply.status.lower() == "charging"
        reading = energy.power_reading(energy.read_log(self.transport, self.log_path), self.energy_config(self.config))
        res = energy.energy_per_inference(reading, self.idle, latency_ms, charging=charging, top1=self.config.top1)
        if res.efficiency_top1_per_mj is not None:
            notes.append(f"efficiency: {res.efficiency_top1_per_mj:.4g} top-1 %/mJ")
        return {"energy_mj": res.energy_mj, "power_w": res.net_power_w, "energy_note": res.note}
