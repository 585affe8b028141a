"""Energy from fuel-gauge samples: units, sign conventions, integration, idle baseline, honest refusals."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevit_deploy.device_bench import energy


def _samples(amps: float, volts: float, n: int = 20, dt: float = 0.1, current_scale: float = 1e6,
             voltage_scale: float = 1e6, sign: float = -1.0, t0: float = 100.0) -> list[energy.Sample]:
    return [energy.Sample(t0 + k * dt, sign * amps * current_scale, volts * voltage_scale) for k in range(n)]


def _as_text(samples: list[energy.Sample]) -> str:
    return "\n".join(f"PWR {s.t_s} {s.current_raw:.0f} {s.voltage_raw:.0f}" for s in samples)


@pytest.mark.parametrize("current_scale,voltage_scale,sign", [
    (1e6, 1e6, -1.0),   # kernel ABI: uA, uV, negative while discharging
    (1e6, 1e6, 1.0),    # vendor: positive while discharging
    (1e3, 1e6, 1.0),    # mA (some Samsung devices)
    (1e3, 1e3, -1.0),   # mA and mV
])
def test_units_and_sign_are_detected(current_scale, voltage_scale, sign):
    amps, volts = 0.85, 3.95
    samples = energy.parse_samples(_as_text(_samples(amps, volts, current_scale=current_scale,
                                                     voltage_scale=voltage_scale, sign=sign)))
    reading = energy.power_reading(samples)
    assert reading.usable
    assert reading.mean_power_w == pytest.approx(amps * volts, rel=1e-3)
    assert reading.current_unit == ("uA" if current_scale == 1e6 else "mA")
    assert reading.voltage_unit == ("uV" if voltage_scale == 1e6 else "mV")
    assert reading.sign == ("negative" if sign < 0 else "positive")
    assert reading.duration_s == pytest.approx(0.1 * 19)


def test_config_overrides_auto_detection():
    # 5000 raw units: auto says mA (5 A); a device that reports uA would be 5 mA
    samples = _samples(0.005, 4.0, current_scale=1e6)
    auto = energy.power_reading(samples)
    forced = energy.power_reading(samples, energy.EnergyConfig(current_unit="uA", discharge_sign="negative"))
    assert forced.mean_power_w == pytest.approx(0.005 * 4.0, rel=1e-6)
    assert auto.mean_power_w == pytest.approx(forced.mean_power_w * 1000, rel=1e-6)


def test_integration_is_trapezoidal_and_skips_time_going_backwards():
    times = [0.0, 1.0, 2.0, 1.5, 3.0]
    watts = [1.0, 3.0, 3.0, 100.0, 1.0]
    joules, seconds = energy.integrate(times, watts)
    assert seconds == pytest.approx(3.5)          # 1 + 1 + (skip) + 1.5
    assert joules == pytest.approx(2.0 + 3.0 + 0.5 * (100.0 + 1.0) * 1.5)


def test_energy_per_inference_subtracts_idle():
    run = energy.power_reading(_samples(1.2, 4.0))
    idle = energy.power_reading(_samples(0.3, 4.0))
    res = energy.energy_per_inference(run, idle, latency_ms=20.0, top1=73.4)
    net = (1.2 - 0.3) * 4.0
    assert res.net_power_w == pytest.approx(net)
    assert res.energy_mj == pytest.approx(net * 20.0)            # W x ms = mJ
    assert res.efficiency_top1_per_mj == pytest.approx(73.4 / (net * 20.0))


def test_charging_device_gives_no_number_and_says_why():
    run = energy.power_reading(_samples(1.2, 4.0))
    res = energy.energy_per_inference(run, None, latency_ms=10.0, charging=True)
    assert res.energy_mj is None and "charging" in res.note


@pytest.mark.parametrize("samples,needle", [
    ([energy.Sample(float(k), 0.0, 4.0e6) for k in range(10)], "current_now reads 0"),
    ([energy.Sample(float(k), -5e5, 0.0) for k in range(10)], "voltage_now reads 0"),
    ([energy.Sample(0.0, -5e5, 4e6)], "only 1 power samples"),
])
def test_unusable_readings_are_explained(samples, needle):
    reading = energy.power_reading(samples)
    assert not reading.usable and needle in " ".join(reading.notes)
    res = energy.energy_per_inference(reading, None, latency_ms=5.0)
    assert res.energy_mj is None and needle in res.note


def test_run_not_above_idle_is_refused():
    same = energy.power_reading(_samples(0.5, 4.0))
    res = energy.energy_per_inference(same, same, latency_ms=5.0)
    assert res.energy_mj is None and "not above idle" in res.note


def test_mixed_signs_are_flagged():
    samples = _samples(0.5, 4.0, n=10) + _samples(0.5, 4.0, n=3, sign=1.0, t0=101.0)
    reading = energy.power_reading(samples)
    assert any("INTO the battery" in n for n in reading.notes)


def test_power_supply_listing_picks_a_battery_with_both_files():
    text = ("/sys/class/power_supply/usb|USB|||\n"
            "/sys/class/power_supply/bms|BMS|Discharging|1|\n"
            "/sys/class/power_supply/battery|Battery|Discharging|1|1\n")
    supplies = energy.parse_power_supplies(text)
    assert [s.path for s in supplies] == ["/sys/class/power_supply/battery"]
    assert supplies[0].current.endswith("/current_now") and supplies[0].status == "Discharging"


def test_sampler_command_quotes_paths_and_keeps_exit_code():
    supply = energy.PowerSupply("/sys/x y", "/sys/x y/current_now", "/sys/x y/voltage_now")
    cmd = energy.wrap_with_sampler("false", supply, "/data/local/tmp/a b.log", 0.1)
    assert "'/sys/x y/current_now'" in cmd and "'/data/local/tmp/a b.log'" in cmd and cmd.endswith("exit $rc")


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300))
def test_sample_parser_never_raises(text):
    for s in energy.parse_samples(text):
        assert all(v == v for v in (s.t_s, s.current_raw, s.voltage_raw))


@settings(max_examples=100, deadline=None)
@given(st.floats(0.01, 5.0), st.floats(3.0, 4.5), st.floats(0.05, 1.0))
def test_mean_power_matches_physics(amps, volts, dt):
    reading = energy.power_reading(_samples(amps, volts, n=8, dt=dt))
    assert reading.mean_power_w == pytest.approx(amps * volts, rel=1e-6)
