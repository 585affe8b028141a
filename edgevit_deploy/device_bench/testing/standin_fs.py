"""The stand-in device's sandbox: fake getprop / dumpsys / taskset / df, sysfs files, build props."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DEFAULT_PROPS: dict[str, str] = {
    "ro.product.name": "standin",
    "ro.product.model": "Standin Phone",
    "ro.product.device": "standin",
    "ro.product.manufacturer": "edgevit",
    "ro.soc.model": "SM8550",
    "ro.board.platform": "kalama",
    "ro.build.version.release": "14",
    "ro.build.version.sdk": "34",
    "ro.product.cpu.abi": "arm64-v8a",
    "ro.serialno": "STANDIN0001",
}

LITTLE_KHZ, BIG_KHZ = 1804800, 2841600
IDLE_CURRENT_UA, LOAD_CURRENT_UA, VOLTAGE_UV = -412000, -1350000, 4012000
GARBAGE_ENV = "EDGEVIT_STANDIN_GARBAGE"  # fault: the stand-in tools print random bytes instead of a report
ROOT_ENV = "EDGEVIT_STANDIN_ROOT"  # set in the stand-in shell: the fake runners simulate their battery draw
N_CPUS = 8

_DUMPSYS: dict[str, str] = {
    "battery": """Current Battery Service state:
  AC powered: false
  USB powered: false
  Wireless powered: false
  Max charging current: 0
  Max charging voltage: 0
  Charge counter: 3456000
  status: 3
  health: 2
  present: true
  level: 87
  scale: 100
  voltage: 4012
  temperature: 291
  technology: Li-ion
""",
    "thermalservice": """IsStatusOverride: false
ThermalEventListeners:
	callbacks: 1
ThermalStatusListeners:
	callbacks: 1
Thermal Status: 0
Cached temperatures:
	Temperature{mValue=31.5, mType=0, mName=CPU0, mStatus=0}
	Temperature{mValue=29.0, mType=2, mName=battery, mStatus=0}
HAL Ready: true
""",
    "power": """POWER MANAGER (dumpsys power)

Power Manager State:
  mDirty=0x0
  mWakefulness=Asleep
  mWakefulnessChanging=false
  mIsPowered=false
  mPlugType=0
  mStayOn=false
Display Power: state=OFF
""",
}

_SCRIPTS: dict[str, str] = {
    "getprop": """#!/bin/sh
F="{state}/build.prop"
if [ $# -eq 0 ]; then
  while IFS='=' read -r k v; do echo "[$k]: [$v]"; done < "$F"
  exit 0
fi
grep -m1 "^$1=" "$F" | cut -d= -f2-
exit 0
""",
    "dumpsys": """#!/bin/sh
name=$(printf %s "$1" | tr / _)
if [ -f "{state}/dumpsys/$name" ]; then cat "{state}/dumpsys/$name"; exit 0; fi
echo "Can't find service: $1"
exit 0
""",
    # the host may have fewer cores than the mask names: validate the mask, then run the command unpinned
    "taskset": """#!/bin/sh
case "$1" in ''|*[!0-9a-fA-Fx]*) echo "taskset: bad mask: $1" >&2; exit 1;; esac
shift
exec "$@"
""",
    "df": """#!/bin/sh
if [ -f "{state}/df_free_kb" ]; then
  free=$(cat "{state}/df_free_kb")
  echo "Filesystem     1K-blocks    Used Available Use% Mounted on"
  echo "/dev/block/dm-48 115000000 1000000 $free 99% /data"
  exit 0
fi
exec /bin/df "$@"
""",
}


def populate(root: Path, props: dict[str, str]) -> None:
    """Create (or refresh) the sandbox tree of a stand-in device under ``root``."""
    state = root / ".standin"
    for sub in ("data/local/tmp", "sdcard", "system/bin", ".standin/dumpsys"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (state / "build.prop").write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    for name, text in _DUMPSYS.items():
        (state / "dumpsys" / name).write_text(text)
    for name, text in _SCRIPTS.items():
        path = root / "system/bin" / name
        path.write_text(text.replace("{state}", str(state)))
        path.chmod(0o755)
    cpu = root / "sys/devices/system/cpu"
    (cpu).mkdir(parents=True, exist_ok=True)
    (cpu / "possible").write_text(f"0-{N_CPUS - 1}\n")
    for i in range(N_CPUS):
        khz = BIG_KHZ if i >= N_CPUS // 2 else LITTLE_KHZ
        freq = cpu / f"cpu{i}/cpufreq"
        freq.mkdir(parents=True, exist_ok=True)
        for fname, value in (
            ("scaling_governor", "schedutil"),
            ("cpuinfo_max_freq", khz),
            ("scaling_max_freq", khz),
            ("scaling_cur_freq", khz),
        ):
            (freq / fname).write_text(f"{value}\n")
    for i, (ztype, temp) in enumerate((("cpu-0-0", 31500), ("battery", 29000))):
        zone = root / f"sys/class/thermal/thermal_zone{i}"
        zone.mkdir(parents=True, exist_ok=True)
        (zone / "type").write_text(ztype + "\n")
        (zone / "temp").write_text(f"{temp}\n")
    battery = root / "sys/class/power_supply/battery"
    battery.mkdir(parents=True, exist_ok=True)
    for fname, value in (
        ("type", "Battery"),
        ("status", "Discharging"),
        ("capacity", "87"),
        ("current_now", str(IDLE_CURRENT_UA)),
        ("voltage_now", str(VOLTAGE_UV)),
    ):
        (battery / fname).write_text(value + "\n")
    usb = root / "sys/class/power_supply/usb"
    usb.mkdir(parents=True, exist_ok=True)
    (usb / "type").write_text("USB\n")
    (usb / "online").write_text("0\n")


@contextmanager
def simulated_load() -> Iterator[None]:
    """Inside a stand-in shell, raise the battery's current_now while a fake runner works (the phone draws
    more under load), so energy sampling sees a real difference to idle; a no-op elsewhere."""
    root = os.environ.get(ROOT_ENV)
    current = Path(root) / "sys/class/power_supply/battery/current_now" if root else None
    if current is None or not current.is_file():
        yield
        return
    current.write_text(f"{LOAD_CURRENT_UA}\n")
    try:
        yield
    finally:
        current.write_text(f"{IDLE_CURRENT_UA}\n")


def write_free_space(root: Path, free_bytes: int | None) -> None:
    """Make the fake ``df`` report ``free_bytes`` available (None: the host's real df)."""
    marker = root / ".standin/df_free_kb"
    if free_bytes is None:
        marker.unlink(missing_ok=True)
    else:
        marker.write_text(f"{max(0, free_bytes) // 1024}\n")


def shell_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    host_path = env.get("PATH", "/usr/bin:/bin")
    env["PATH"] = os.pathsep.join([str(root / "system/bin"), str(root / "data/local/tmp"), host_path])
    env["ANDROID_DATA"] = str(root / "data")
    env["EXTERNAL_STORAGE"] = str(root / "sdcard")
    env["TMPDIR"] = str(root / "data/local/tmp")
    env[ROOT_ENV] = str(root)
    return env
