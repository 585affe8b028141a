"""Android device probes: properties, CPU governor and frequencies, thermal status, battery, screen.

Everything is read through a Transport's ``shell`` in as few round trips as possible (one script with
section markers), and parsed by pure functions tested on fixtures.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import DeviceCommandError
from .shell import quote
from .types import DeviceInfo, Transport

DEFAULT_WORK_DIR = "/data/local/tmp/edgevit"
_SECTION = "=====EDGEVIT:"
_PROBE_SCRIPT = f"""echo '{_SECTION}props'; getprop
echo '{_SECTION}cpu'; for c in /sys/devices/system/cpu/cpu[0-9]*; do f=$c/cpufreq; \
echo "${{c##*/}} $(cat $f/scaling_governor 2>/dev/null || echo -) $(cat $f/cpuinfo_max_freq 2>/dev/null || echo 0) \
$(cat $f/scaling_max_freq 2>/dev/null || echo 0) $(cat $f/scaling_cur_freq 2>/dev/null || echo 0)"; done
echo '{_SECTION}zones'; for z in /sys/class/thermal/thermal_zone*; do \
echo "$(cat $z/type 2>/dev/null || echo ?) $(cat $z/temp 2>/dev/null || echo ?)"; done
echo '{_SECTION}thermalservice'; dumpsys thermalservice 2>/dev/null
echo '{_SECTION}battery'; dumpsys battery 2>/dev/null
echo '{_SECTION}power'; dumpsys power 2>/dev/null | grep -E 'mWakefulness=|Display Power|mIsPowered|mScreenOn'
echo '{_SECTION}end'"""


@dataclass
class CpuInfo:
    cpu: int
    governor: str
    max_khz: int  # cpuinfo_max_freq: what the silicon can do
    cap_khz: int  # scaling_max_freq: what the governor allows now (thermal caps lower it)
    cur_khz: int


@dataclass
class BatteryInfo:
    level: float | None = None
    charging: bool = False  # any of AC / USB / Wireless powered, or status 2 (charging)
    powered_by: list[str] = field(default_factory=list)
    status: int | None = None  # BatteryManager: 2 charging, 3 discharging, 4 not charging, 5 full
    voltage_mv: int | None = None
    temperature_c: float | None = None


@dataclass
class DeviceSnapshot:
    """What is read before and after each run."""

    thermal_status: int | None
    zones_c: dict[str, float]
    cpus: list[CpuInfo]
    battery: BatteryInfo
    screen_on: bool | None
    wakefulness: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_sections(output: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        if line.startswith(_SECTION):
            current = sections.setdefault(line[len(_SECTION) :].strip(), [])
        elif current is not None:
            current.append(line)
    return {k: "\n".join(v) for k, v in sections.items()}


def parse_getprop(text: str) -> dict[str, str]:
    """``getprop`` without arguments prints ``[key]: [value]`` lines."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^\[([^\]]+)\]:\s*\[(.*)\]\s*$", text, re.M)}


def parse_cpu_lines(text: str) -> list[CpuInfo]:
    cpus = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 5 or not parts[0].startswith("cpu") or not parts[0][3:].isdigit():
            continue
        nums = [int(p) if p.isdigit() else 0 for p in parts[2:]]
        cpus.append(CpuInfo(int(parts[0][3:]), parts[1], *nums))
    return sorted(cpus, key=lambda c: c.cpu)


def parse_thermal_zones(text: str) -> dict[str, float]:
    """``type temp`` lines; temperatures in milli-degrees (most kernels) or degrees -> degrees C."""
    zones: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.rsplit(None, 1)
        if len(parts) != 2:
            continue
        try:
            value = float(parts[1])
        except ValueError:
            continue
        name = parts[0]
        while name in zones:
            name += "'"
        zones[name] = value / 1000.0 if abs(value) > 200 else value
    return zones


def parse_thermal_status(text: str) -> int | None:
    """``dumpsys thermalservice``: "Thermal Status: N" (0 none, 1 light, 2 moderate, 3 severe, ... 6 shutdown)."""
    match = re.search(r"Thermal Status:\s*(\d+)", text)
    return int(match.group(1)) if match else None


def parse_battery(text: str) -> BatteryInfo:
    """``dumpsys battery``."""
    info = BatteryInfo()
    for source in ("AC", "USB", "Wireless", "Dock"):
        if re.search(rf"^\s*{source} powered:\s*true", text, re.M | re.I):
            info.powered_by.append(source)
    fields = dict(re.findall(r"^\s*(level|scale|status|voltage|temperature):\s*(-?\d+)\s*$", text, re.M))
    if "level" in fields:
        scale = int(fields.get("scale", 100)) or 100
        info.level = 100.0 * int(fields["level"]) / scale
    if "status" in fields:
        info.status = int(fields["status"])
    if "voltage" in fields:
        info.voltage_mv = int(fields["voltage"])
    if "temperature" in fields:
        info.temperature_c = int(fields["temperature"]) / 10.0
    info.charging = bool(info.powered_by) or info.status == 2
    return info


def parse_power(text: str) -> tuple[bool | None, str | None]:
    """(screen on?, wakefulness) from ``dumpsys power``."""
    wake = re.search(r"mWakefulness=(\w+)", text)
    display = re.search(r"Display Power: state=(\w+)", text)
    screen_on_flag = re.search(r"mScreenOn=(\w+)", text)
    screen_on: bool | None = None
    if display:
        screen_on = display.group(1).upper() == "ON"
    elif screen_on_flag:
        screen_on = screen_on_flag.group(1).lower() == "true"
    elif wake:
        screen_on = wake.group(1) == "Awake"
    return screen_on, wake.group(1) if wake else None


def parse_df_available(output: str) -> int:
    """Available bytes from ``df -k PATH`` (toybox, busybox and GNU layouts: 'Available' is the 4th column
    of the last data line; a wrapped long filesystem name puts it 3rd on its own line)."""
    lines = [ln for ln in output.strip().splitlines() if ln.strip() and not ln.lstrip().startswith("Filesystem")]
    if not lines:
        raise ValueError(f"no data line in df output: {output!r}")
    parts = lines[-1].split()
    numeric = [p for p in parts if p.isdigit()]
    if len(numeric) < 3:
        raise ValueError(f"cannot read the available space from df output: {output!r}")
    return int(numeric[2]) * 1024


def snapshot_from_sections(sections: dict[str, str]) -> DeviceSnapshot:
    screen_on, wakefulness = parse_power(sections.get("power", ""))
    return DeviceSnapshot(
        thermal_status=parse_thermal_status(sections.get("thermalservice", "")),
        zones_c=parse_thermal_zones(sections.get("zones", "")),
        cpus=parse_cpu_lines(sections.get("cpu", "")),
        battery=parse_battery(sections.get("battery", "")),
        screen_on=screen_on,
        wakefulness=wakefulness,
    )


def probe(transport: Transport, timeout: float = 30.0) -> tuple[dict[str, str], DeviceSnapshot]:
    """(build properties, snapshot) in one shell round trip."""
    result = transport.shell(_PROBE_SCRIPT, timeout=timeout)
    sections = split_sections(result.stdout)
    if "end" not in sections:
        raise DeviceCommandError(transport.device_id, "device probe", result.exit_code, result.stdout + result.stderr)
    return parse_getprop(sections.get("props", "")), snapshot_from_sections(sections)


def snapshot(transport: Transport, timeout: float = 30.0) -> DeviceSnapshot:
    return probe(transport, timeout)[1]


def snapshot_dict(snap: DeviceSnapshot) -> dict[str, Any]:
    """The flat dict stored as ``thermal_before`` / ``thermal_after`` (and read by the sweep's throttle check)."""
    return {
        "thermal_status": snap.thermal_status,
        "zones_c": dict(snap.zones_c),
        "cpu_max_freqs_khz": [c.cap_khz or c.max_khz for c in snap.cpus],
        "cpu_cur_freqs_khz": [c.cur_khz for c in snap.cpus],
        "battery_level": snap.battery.level,
        "charging": snap.battery.charging,
        "battery_temperature_c": snap.battery.temperature_c,
        "screen_on": snap.screen_on,
    }


def thermal_snapshot(transport: Transport) -> dict[str, Any]:
    return snapshot_dict(snapshot(transport))


def device_info_from(device_id: str, props: dict[str, str], snap: DeviceSnapshot) -> DeviceInfo:
    governors = sorted({c.governor for c in snap.cpus if c.governor and c.governor != "-"})
    return DeviceInfo(
        id=device_id,
        kind="adb",
        model=props.get("ro.product.model", ""),
        soc=props.get("ro.soc.model") or props.get("ro.board.platform") or props.get("ro.hardware", ""),
        os_version=props.get("ro.build.version.release", ""),
        abi=props.get("ro.product.cpu.abi", ""),
        cpu_governor=",".join(governors),
        cpu_max_freqs_khz=[c.max_khz for c in snap.cpus],
        extra={
            "manufacturer": props.get("ro.product.manufacturer", ""),
            "sdk": props.get("ro.build.version.sdk", ""),
            "platform": props.get("ro.board.platform", ""),
            "serialno": props.get("ro.serialno", ""),
            "battery_level": snap.battery.level,
            "charging": snap.battery.charging,
            "screen_on": snap.screen_on,
            "thermal_status": snap.thermal_status,
        },
    )


def device_info(transport: Transport) -> DeviceInfo:
    props, snap = probe(transport)
    return device_info_from(transport.device_id, props, snap)


def free_space(transport: Transport, remote_dir: str) -> int:
    """Free bytes in ``remote_dir`` (its nearest existing parent when it does not exist yet)."""
    command = f'd={quote(remote_dir)}; while [ ! -d "$d" ] && [ "$d" != / ]; do d=$(dirname "$d"); done; df -k "$d"'
    result = transport.shell(command, timeout=30)
    if not result.ok:
        raise DeviceCommandError(transport.device_id, "df -k", result.exit_code, result.stdout + result.stderr)
    return parse_df_available(result.stdout)


def throttle_reasons(
    before: DeviceSnapshot | Mapping[str, Any], after: DeviceSnapshot | Mapping[str, Any]
) -> list[str]:
    """THE throttling rule (the runners' and the sweep's): why a run counts as throttled. The thermal status
    rose, or is at least moderate (2) after the run; or a CPU's frequency cap (``scaling_max_freq``) fell
    during the run. Takes snapshots or the flat dicts of :func:`snapshot_dict` (``thermal_before`` /
    ``thermal_after``); a field one side lacks is not compared."""
    b = snapshot_dict(before) if isinstance(before, DeviceSnapshot) else before
    a = snapshot_dict(after) if isinstance(after, DeviceSnapshot) else after
    reasons = []
    status_b, status_a = b.get("thermal_status"), a.get("thermal_status")
    if status_a is not None:
        if int(status_a) >= 2:
            reasons.append(f"thermal status {status_a} (moderate or worse) after the run")
        elif status_b is not None and int(status_a) > int(status_b):
            reasons.append(f"thermal status rose {status_b} -> {status_a}")
    caps_b, caps_a = b.get("cpu_max_freqs_khz") or [], a.get("cpu_max_freqs_khz") or []
    if len(caps_b) == len(caps_a):
        for cpu, (was, now) in enumerate(zip(caps_b, caps_a)):
            if was and now and now < was:
                reasons.append(f"cpu{cpu} frequency cap fell {was} -> {now} kHz")
    return reasons


def throttled(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool | None:
    """:func:`throttle_reasons` as the stored flag: None when the snapshots say nothing comparable."""
    if not before or not after:
        return None
    if throttle_reasons(before, after):
        return True
    caps_b, caps_a = before.get("cpu_max_freqs_khz") or [], after.get("cpu_max_freqs_khz") or []
    if caps_b and len(caps_b) == len(caps_a):
        return False
    return False if "thermal_status" in after else None


def idle_warnings(snap: DeviceSnapshot) -> list[str]:
    """Conditions that make a measurement less trustworthy (reported, not fatal)."""
    warnings = []
    if snap.screen_on:
        warnings.append("screen is on (turn it off for stable timings: adb shell input keyevent 223)")
    if snap.battery.charging:
        warnings.append(f"device is charging ({'/'.join(snap.battery.powered_by) or 'status charging'})")
    if snap.thermal_status:
        warnings.append(f"thermal status is {snap.thermal_status} before the run (let the device cool down)")
    return warnings


def big_core_mask(cpus: list[CpuInfo]) -> str | None:
    """taskset mask of the CPUs with the highest max frequency (None if all are equal or unknown)."""
    known = [c for c in cpus if c.max_khz]
    if not known or len({c.max_khz for c in known}) < 2:
        return None
    top = max(c.max_khz for c in known)
    mask = 0
    for c in known:
        if c.max_khz == top:
            mask |= 1 << c.cpu
    return format(mask, "x")
