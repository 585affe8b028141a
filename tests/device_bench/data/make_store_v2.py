"""Make ``store_v2.sqlite``: a result store written by release 0.1.0 / schema 2 (the last release before the
store kept every run), the input of the schema-3 migration test (``tests/device_bench/test_store_history.py``).

It must be run with the code of THAT release (the commit before schema 3, e.g. ``git worktree add /tmp/v2
16f06b2``), never with the current tree, whose store writes schema 3::

    PYTHONPATH=/tmp/v2 python tests/device_bench/data/make_store_v2.py tests/device_bench/data/store_v2.sqlite

Rows (deterministic, no randomness): ok and failed rows on two devices (``adb:R58N1`` and ``local``), with and
without a cpu mask, energy fields, parity, thermal snapshots, throttling, device info and per-iteration
latencies. The file is checked in (a few tens of KB); the script is kept so it can be made again.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

from edgevit_deploy.device_bench.store import SCHEMA_VERSION, ResultStore
from edgevit_deploy.device_bench.types import BenchJob, DeviceInfo, Measurement

PHONE = DeviceInfo(
    id="adb:R58N1",
    kind="adb",
    model="Pixel 7",
    soc="gs201",
    os_version="14",
    abi="arm64-v8a",
    cpu_governor="schedutil",
    cpu_max_freqs_khz=[1803000, 2348000, 2850000],
    extra={"sdk": 34},
)
HOST = DeviceInfo(id="local", kind="local", model="x86_64", os_version="Linux 6.1", abi="x86_64")


def _latencies(base: float, n: int) -> list[float]:
    """A deterministic, slightly spread sample around ``base`` ms."""
    return [round(base * (1.0 + 0.01 * ((i * 7) % 11 - 5)), 4) for i in range(n)]


def measurements() -> list[Measurement]:
    rows: list[Measurement] = []
    for threads, mask, base in ((1, None, 12.0), (4, "f0", 5.0), (4, None, 6.0)):
        job = BenchJob(
            "edgevit_xxs",
            "tflite",
            "int8",
            threads=threads,
            delegate="xnnpack",
            device="adb:R58N1",
            img_size=224,
            warmup=5,
            iterations=20,
            cpu_mask=mask,
            runner="default",
        )
        lat = _latencies(base, 20)
        rows.append(
            Measurement(
                job=job,
                status="ok",
                runtime="benchmark_model 2.16",
                input_shape=(1, 224, 224, 3),
                model_size_bytes=1_300_000 + threads,
                artifact_sha256=f"{threads:02d}" * 32,
                init_ms=45.5,
                first_ms=30.25,
                warmup_count=5,
                latencies_ms=lat,
                mean_ms=sum(lat) / len(lat),
                median_ms=sorted(lat)[10],
                p90_ms=max(lat),
                p99_ms=max(lat),
                std_ms=0.1,
                min_ms=min(lat),
                trimmed_mean_ms=sum(lat) / len(lat),
                peak_memory_mb=48.5 + threads,
                energy_mj=21.5 * threads,
                power_w=1.75,
                energy_note="discharging",
                thermal_before={"thermal_status": 0, "temps_c": {"cpu": 35.0}},
                thermal_after={"thermal_status": 1 if mask else 0, "temps_c": {"cpu": 41.5}},
                throttled=bool(mask),
                battery_level=87.0,
                device=PHONE,
                toolkit_version="0.1.0",
                timestamp=f"2026-11-0{threads}T10:00:00+00:00",
                raw_output=f"count=20 avg={base}",
                notes=["screen on"] if threads == 1 else [],
                parity={"max_abs": 0.012 * threads, "cosine": 0.9991, "top1_agree": True, "passed": True},
            )
        )
    failed_job = BenchJob(
        "edgevit_xxs",
        "tflite",
        "fp32",
        threads=1,
        delegate="gpu",
        device="adb:R58N1",
        img_size=224,
        warmup=5,
        iterations=20,
        cpu_mask="f0",
    )
    rows.append(
        Measurement(
            job=failed_job,
            status="failed",
            reason="Failed to apply GPU delegate.",
            runtime="benchmark_model 2.16",
            device=PHONE,
            toolkit_version="0.1.0",
            timestamp="2026-11-05T10:00:00+00:00",
            energy_note="no battery reading",
            thermal_before={"thermal_status": 0},
            throttled=False,
        )
    )
    for target, base in (("onnx", 8.0), ("torch", 9.5)):
        job = BenchJob(
            "edgevit_xxs",
            target,
            "fp32",
            threads=2,
            delegate="cpu",
            device="local",
            img_size=160,
            warmup=3,
            iterations=15,
        )
        lat = _latencies(base, 15)
        rows.append(
            Measurement(
                job=job,
                status="ok",
                runtime=f"{target} host",
                input_shape=(1, 3, 160, 160),
                model_size_bytes=9_000_000,
                artifact_sha256="cd" * 32 if target == "onnx" else None,
                latencies_ms=lat,
                mean_ms=sum(lat) / len(lat),
                median_ms=sorted(lat)[7],
                min_ms=min(lat),
                p90_ms=max(lat),
                p99_ms=max(lat),
                std_ms=0.2,
                trimmed_mean_ms=sum(lat) / len(lat),
                peak_memory_mb=150.0,
                device=HOST,
                toolkit_version="0.1.0",
                timestamp=f"2026-11-06T1{len(target)}:00:00+00:00",
                throttled=False,
                energy_note="energy is measured on Android only",
            )
        )
    job = BenchJob("edgevit_xxs", "onnx", "int8", threads=2, delegate="cpu", device="local", img_size=160)
    rows.append(
        Measurement(
            job=job,
            status="failed",
            reason="export failed: RuntimeError: no calibration data",
            device=HOST,
            toolkit_version="0.1.0",
            timestamp="2026-11-06T12:00:00+00:00",
        )
    )
    return rows


def main(out: str) -> None:
    if SCHEMA_VERSION != 2:
        sys.exit(f"this tree writes store schema {SCHEMA_VERSION}; run with the code of schema 2 (see the docstring)")
    path = Path(out)
    path.unlink(missing_ok=True)
    with ResultStore(path) as store:
        for m in measurements():
            store.put(m)
    with sqlite3.connect(path) as conn:  # fold the WAL into the file: one self-contained fixture
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("VACUUM")
    conn.close()
    print(f"wrote {path} ({path.stat().st_size} bytes, {len(measurements())} rows, schema {SCHEMA_VERSION})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).with_name("store_v2.sqlite")))
