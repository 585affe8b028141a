"""Energy per inference from the battery fuel gauge (no external meter).

A background shell loop on the device samples ``/sys/class/power_supply/<battery>/current_now`` and
``voltage_now`` (with ``/proc/uptime`` time stamps) during a run and during an idle baseline. The pure
functions below detect the units (µA vs mA, µV vs mV) and the sign convention (the kernel ABI says
negative while discharging; many vendors report positive), integrate power, subtract the idle
baseline and give mJ per inference and the EdgeViT paper's efficiency metric (top-1 / mJ).

They say plainly when there is no usable reading (no files, zeros, too few samples, the run drew no
more than idle) or when the device is charging (a charger feeds the load: the gauge does not see it).
"""

from __future__ import annotations

import logging
import math
import statistics
from dataclasses import dataclass, field

from .shell import quote
from .types import Transport

log = logging.getLogger(__name__)

SAMPLE_PREFIX = "PWR"
MIN_SAMPLES = 3


@dataclass(frozen=True)
class PowerSupply:
    path: str  # /sys/class/power_supply/battery
    current: str  # .../current_now
    voltage: str  # .../voltage_now
    status: str = ""  # Charging / Discharging / Not charging / Full


@dataclass(frozen=True)
class Sample:
    t_s: float
    current_raw: float
    voltage_raw: float


@dataclass
class EnergyConfig:
    current_unit: str = "auto"  # "auto" | "uA" | "mA"
    voltage_unit: str = "auto"  # "auto" | "uV" | "mV"
    discharge_sign: str = "auto"  # "auto" | "negative" (kernel ABI) | "positive"
    interval_s: float = 0.1
    idle_s: float = 5.0


@dataclass
class PowerReading:
    """Mean discharge power over one sampled window."""

    usable: bool
    mean_power_w: float | None = None
    energy_j: float | None = None
    duration_s: float = 0.0
    samples: int = 0
    current_unit: str = ""
    voltage_unit: str = ""
    sign: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class EnergyResult:
    energy_mj: float | None  # per inference
    net_power_w: float | None  # run minus idle
    run: PowerReading | None
    idle: PowerReading | None
    efficiency_top1_per_mj: float | None
    note: str | None  # why there is no number, or caveats


# ---------------------------------------------------------------------------------- pure functions
def parse_samples(text: str) -> list[Sample]:
    """Lines ``PWR <uptime_s> <current_raw> <voltage_raw>``; anything else is ignored."""
    samples = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 4 or parts[0] != SAMPLE_PREFIX:
            continue
        try:
            t, i, v = float(parts[1]), float(parts[2]), float(parts[3])
        except ValueError:
            continue
        if all(math.isfinite(x) for x in (t, i, v)):
            samples.append(Sample(t, i, v))
    return samples


def detect_current_unit(raw: list[float], override: str = "auto") -> str:
    """µA unless the magnitudes only make sense as mA (a phone draws 10 mA .. 10 A)."""
    if override != "auto":
        return override
    nonzero = [abs(x) for x in raw if x]
    if not nonzero:
        return "uA"
    return "uA" if statistics.median(nonzero) >= 10_000 else "mA"


def detect_voltage_unit(raw: list[float], override: str = "auto") -> str:
    """µV unless the magnitudes look like mV (a Li-ion cell sits at 3.0-4.5 V)."""
    if override != "auto":
        return override
    nonzero = [abs(x) for x in raw if x]
    if not nonzero:
        return "uV"
    return "uV" if statistics.median(nonzero) >= 100_000 else "mV"


def detect_sign(currents: list[float], override: str = "auto") -> str:
    """Which sign means discharging. Auto: the sign of the median current of a discharging device."""
    if override != "auto":
        return override
    nonzero = [x for x in currents if x]
    if not nonzero:
        return "negative"
    return "negative" if statistics.median(nonzero) < 0 else "positive"


_SCALE = {"uA": 1e-6, "mA": 1e-3, "uV": 1e-6, "mV": 1e-3}


def power_reading(samples: list[Sample], config: EnergyConfig | None = None) -> PowerReading:
    """Mean discharge power (W) of a window of samples, with every caveat in ``notes``."""
    config = config or EnergyConfig()
    if len(samples) < MIN_SAMPLES:
        return PowerReading(
            usable=False,
            samples=len(samples),
            notes=[
                f"only {len(samples)} power samples (need {MIN_SAMPLES}): run too short or "
                "the sampler could not read the power_supply files"
            ],
        )
    currents = [s.current_raw for s in samples]
    voltages = [s.voltage_raw for s in samples]
    if not any(currents):
        return PowerReading(
            usable=False, samples=len(samples), notes=["current_now reads 0 on this device: no usable energy reading"]
        )
    if not any(voltages):
        return PowerReading(
            usable=False, samples=len(samples), notes=["voltage_now reads 0 on this device: no usable energy reading"]
        )
    i_unit = detect_current_unit(currents, config.current_unit)
    v_unit = detect_voltage_unit(voltages, config.voltage_unit)
    sign = detect_sign(currents, config.discharge_sign)
    direction = -1.0 if sign == "negative" else 1.0
    notes: list[str] = []
    watts = [direction * s.current_raw * _SCALE[i_unit] * s.voltage_raw * _SCALE[v_unit] for s in samples]
    charging_samples = sum(1 for w in watts if w < 0)
    if charging_samples:
        notes.append(
            f"{charging_samples}/{len(watts)} samples show current flowing INTO the battery "
            "(charging, or a wrong sign setting)"
        )
    if len(set(currents)) < MIN_SAMPLES:
        notes.append(
            f"only {len(set(currents))} distinct current readings: the fuel gauge updates slowly, use longer runs"
        )
    integrated_j, duration = integrate([s.t_s for s in samples], watts)
    energy_j: float | None = None
    if duration <= 0:
        mean_w = sum(watts) / len(watts)
    else:
        energy_j = integrated_j
        mean_w = integrated_j / duration
    return PowerReading(
        usable=True,
        mean_power_w=mean_w,
        energy_j=energy_j,
        duration_s=max(duration, 0.0),
        samples=len(samples),
        current_unit=i_unit,
        voltage_unit=v_unit,
        sign=sign,
        notes=notes,
    )


def integrate(times_s: list[float], watts: list[float]) -> tuple[float, float]:
    """Trapezoidal integral of power over time: (joules, seconds). Non-increasing time steps are skipped."""
    energy = 0.0
    duration = 0.0
    for k in range(1, min(len(times_s), len(watts))):
        dt = times_s[k] - times_s[k - 1]
        if dt <= 0:
            continue
        energy += 0.5 * (watts[k] + watts[k - 1]) * dt
        duration += dt
    return energy, duration


def efficiency(top1: float | None, energy_mj: float | None) -> float | None:
    """The EdgeViT paper's energy efficiency: top-1 accuracy (%) per mJ per inference."""
    if top1 is None or energy_mj is None or energy_mj <= 0:
        return None
    return top1 / energy_mj


def energy_per_inference(
    run: PowerReading,
    idle: PowerReading | None,
    latency_ms: float | None,
    charging: bool = False,
    top1: float | None = None,
) -> EnergyResult:
    """(run power - idle power) x latency = mJ per inference (W x ms = mJ)."""
    if charging:
        return EnergyResult(
            None,
            None,
            run,
            idle,
            None,
            "device was charging: the charger feeds the load, so the battery gauge does not "
            "measure it (unplug, and use adb over Wi-Fi)",
        )
    if not run.usable:
        return EnergyResult(None, None, run, idle, None, "; ".join(run.notes) or "no usable power reading")
    if latency_ms is None or latency_ms <= 0:
        return EnergyResult(None, None, run, idle, None, "no latency to turn power into energy per inference")
    notes = list(run.notes)
    idle_w = 0.0
    if idle is not None and idle.usable and idle.mean_power_w is not None:
        idle_w = idle.mean_power_w
    else:
        notes.append("no usable idle baseline: energy includes the idle draw of the whole phone")
    assert run.mean_power_w is not None
    net = run.mean_power_w - idle_w
    if net <= 0:
        return EnergyResult(
            None,
            net,
            run,
            idle,
            None,
            f"run power {run.mean_power_w:.3f} W is not above idle {idle_w:.3f} W: the gauge "
            "is too coarse for this run (use more iterations)",
        )
    energy_mj = net * latency_ms
    return EnergyResult(energy_mj, net, run, idle, efficiency(top1, energy_mj), "; ".join(notes) or None)


# ---------------------------------------------------------------------------------- on the device
def parse_power_supplies(text: str) -> list[PowerSupply]:
    """Lines ``path|type|status|has_current|has_voltage`` -> battery supplies that can be sampled."""
    supplies = []
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 5:
            continue
        path, kind, status, has_i, has_v = parts
        if kind.strip().lower() == "battery" and has_i == "1" and has_v == "1":
            supplies.append(PowerSupply(path, f"{path}/current_now", f"{path}/voltage_now", status.strip()))
    return supplies


_LIST_SUPPLIES = (
    'for d in /sys/class/power_supply/*; do echo "$d|$(cat $d/type 2>/dev/null)|'
    '$(cat $d/status 2>/dev/null)|$([ -r $d/current_now ] && echo 1)|$([ -r $d/voltage_now ] && echo 1)";'
    " done"
)


def find_battery(transport: Transport) -> PowerSupply | None:
    result = transport.shell(_LIST_SUPPLIES, timeout=30)
    supplies = parse_power_supplies(result.stdout)
    if not supplies:
        log.info("%s: no battery with current_now and voltage_now", transport.device_id)
    return supplies[0] if supplies else None


def sampler_loop(supply: PowerSupply, interval_s: float) -> str:
    """The shell loop printing one ``PWR uptime current voltage`` line per interval."""
    return (
        f"while :; do echo \"{SAMPLE_PREFIX} $(cut -d' ' -f1 /proc/uptime) $(cat {quote(supply.current)}) "
        f'$(cat {quote(supply.voltage)})"; sleep {interval_s:g}; done'
    )


def wrap_with_sampler(command: str, supply: PowerSupply, log_path: str, interval_s: float) -> str:
    """Run ``command`` with the sampler in the background, writing to ``log_path``; keeps its exit code."""
    return (
        f"( {sampler_loop(supply, interval_s)} ) > {quote(log_path)} 2>/dev/null & EDGEVIT_SAMPLER=$!; "
        f"{command}; rc=$?; kill $EDGEVIT_SAMPLER 2>/dev/null; wait $EDGEVIT_SAMPLER 2>/dev/null; exit $rc"
    )


def idle_command(supply: PowerSupply, log_path: str, seconds: float, interval_s: float) -> str:
    return wrap_with_sampler(f"sleep {seconds:g}", supply, log_path, interval_s)


def read_log(transport: Transport, log_path: str) -> list[Sample]:
    result = transport.shell(f"cat {quote(log_path)}; rm -f {quote(log_path)}", timeout=60)
    return parse_samples(result.stdout)


def measure_idle(transport: Transport, supply: PowerSupply, work_dir: str, config: EnergyConfig) -> PowerReading:
    log_path = f"{work_dir}/edgevit_idle_power.log"
    transport.shell(idle_command(supply, log_path, config.idle_s, config.interval_s), timeout=config.idle_s + 60)
    reading = power_reading(read_log(transport, log_path), config)
    log.info(
        "%s: idle power %s over %d samples (%s)",
        transport.device_id,
        f"{reading.mean_power_w:.3f} W" if reading.mean_power_w is not None else "unusable",
        reading.samples,
        "; ".join(reading.notes) or "ok",
    )
    return reading
