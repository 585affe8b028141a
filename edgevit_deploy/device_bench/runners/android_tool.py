"""The shared machinery of the Android tool runners: push the tool and the model, probe the device
before and after, sample energy, run with a timeout and an optional taskset mask, parse."""

from __future__ import annotations

import abc
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from ..errors import RunnerConfigError
from ..types import BenchJob, Measurement, ShellResult, Transport
from .config import BIG_CORES, DEFAULT_DEVICE_TIMEOUT_S, ENV_BENCHMARK_MODEL, ENV_ORT_PERF_TEST, RunnerConfig
from .energy_sampler import EnergySampler

log = logging.getLogger(__name__)


class AndroidToolRunner(abc.ABC):
    """Base of the runners that drive a benchmark binary on an Android device through a Transport.

    Subclasses set ``name``, ``tool`` (the RunnerConfig attribute holding the host path of the binary),
    ``delegates`` (job delegate -> tool option) and implement ``command`` and ``parse``.
    Device errors (dropped connection, device full) propagate as typed DeviceErrors so the sweep can
    reconnect and retry; everything about the run itself becomes a failed Measurement with its reason.
    """

    name = ""
    tool = ""
    records_thermal = True  # probes the device before and after the run itself (the sweep does not again)
    delegates: ClassVar[Mapping[str, str]] = {}

    def __init__(self, config: RunnerConfig | None = None):
        self.config = config or RunnerConfig.from_env()

    # subclass API ------------------------------------------------------------------------------
    @abc.abstractmethod
    def command(self, job: BenchJob, tool_path: str, model_path: str, scratch: str) -> list[str]:
        """The tool's argv for ``job``."""

    @abc.abstractmethod
    def parse(self, transport: Transport, result: Any, model_path: str, scratch: str) -> Any:
        """A Measurement from the tool's output."""

    # optional output check (runners whose tool can take an input file and dump its outputs) ----------
    def prepare_outputs(
        self, transport: Transport, job: BenchJob, artifact: Any, scratch: str, notes: list[str]
    ) -> Any:
        """Push what the output check needs into ``scratch``; a state for the hooks below, or None (no check)."""
        return None

    def output_flags(self, state: Any) -> list[str]:
        """The tool's extra arguments that feed the input and dump the outputs."""
        return []

    def rejects_output_flags(self, state: Any, result: ShellResult) -> bool:
        """Whether the tool named the output flags as unknown (too old): no outputs; a failed run is repeated
        without them."""
        return False

    def check_outputs(self, transport: Transport, state: Any, notes: list[str]) -> dict[str, Any]:
        """Measurement fields (``parity``) from the dumped outputs of an ok run."""
        return {}

    def outputs_unavailable(self, state: Any) -> dict[str, Any]:
        """Measurement fields when the tool could not dump outputs."""
        return {}

    # shared ------------------------------------------------------------------------------------
    def tool_binary(self) -> Path:
        path = getattr(self.config, self.tool, None)
        env = {"benchmark_model": ENV_BENCHMARK_MODEL, "onnxruntime_perf_test": ENV_ORT_PERF_TEST}[self.tool]
        if path is None:
            raise RunnerConfigError(
                f"no {self.tool} binary configured: pass --{self.tool.replace('_', '-')} "
                f"PATH, set ${env}, or `{self.tool}:` in the sweep file's runners table "
                "(see docs/android.md for where to get an arm64 build)"
            )
        path = Path(path)
        if not path.is_file():
            raise RunnerConfigError(f"{self.tool} binary {path} does not exist (check ${env} / the flag)")
        return path

    def install_tool(self, transport: Transport) -> str:
        """Push the tool binary once per content (sha-named folder) and make it executable."""
        from .. import shell
        from ..artifacts import Artifact, push_once, sha256_of, size_of

        binary = self.tool_binary()
        tool = Artifact(path=binary, sha256=sha256_of(binary), size_bytes=size_of(binary), key="tool")
        remote = push_once(transport, tool)
        res = transport.shell(f"chmod 755 {shell.quote(remote)}", timeout=60)
        if not res.ok:
            raise RunnerConfigError(
                f"{transport.device_id}: cannot make {remote} executable: {(res.stdout + res.stderr).strip()[:300]}"
            )
        return remote

    def install_libraries(self, transport: Transport) -> list[str]:
        """Push the configured shared libraries (once per content); their device folders for LD_LIBRARY_PATH."""
        from ..artifacts import Artifact, push_once, sha256_of, size_of

        folders: list[str] = []
        for lib in self.config.libraries:
            remote = push_once(transport, Artifact(path=lib, sha256=sha256_of(lib), size_bytes=size_of(lib), key="lib"))
            folder = remote.rsplit("/", 1)[0]
            if folder not in folders:
                folders.append(folder)
        return folders

    def run(self, transport: Transport, job: BenchJob, artifact: Any) -> Measurement:
        from .. import shell
        from ..artifacts import Artifact, measurement_base, push_once, sha256_of, size_of

        if not isinstance(artifact, Artifact):
            path = Path(artifact)
            artifact = Artifact(path=path, sha256=sha256_of(path), size_bytes=size_of(path), key="")
        base = measurement_base(job, artifact, runtime=self.name)
        timeout = self.config.timeout_s or DEFAULT_DEVICE_TIMEOUT_S

        def failed(reason: str, **extra: Any) -> Measurement:
            return Measurement(status="failed", reason=reason, **{**base, **extra})

        if job.delegate not in self.delegates:
            return failed(
                f"{self.name} has no delegate {job.delegate!r}; choose one of {', '.join(sorted(self.delegates))}"
            )
        try:
            if job.cpu_mask and job.cpu_mask != BIG_CORES:
                shell.validate_mask(job.cpu_mask)
            tool_path = self.install_tool(transport)
        except (ValueError, RunnerConfigError) as exc:
            return failed(str(exc))
        lib_dirs = self.install_libraries(transport)
        model_path = push_once(transport, artifact)
        scratch = f"{transport.work_dir.rstrip('/')}/run-{artifact.sha256[:12]}"
        made = transport.shell(f"mkdir -p {shell.quote(scratch)}", timeout=60)
        if not made.ok:
            return failed(f"cannot create {scratch} on the device: {(made.stdout + made.stderr).strip()[:300]}")

        notes: list[str] = []
        # before the probe and the energy sampler: building the reference takes host time
        io_state = self.prepare_outputs(transport, job, artifact, scratch, notes)
        snap_before = self._probe_before(transport, base, notes)
        sampler = EnergySampler.start(self.config, transport, scratch, notes)
        mask = job.cpu_mask
        if mask == BIG_CORES:
            mask = _big_core_mask(snap_before)
            notes.append(f"taskset mask {mask} (big cores)" if mask else "cpu mask 'big': all cores alike, not pinned")

        def tool_command(with_outputs: bool) -> str:
            args = self.command(job, tool_path, model_path, scratch)
            if with_outputs:
                args += self.output_flags(io_state)
            line = shell.pinned(args + list(self.config.flags_for(self.tool)), mask)
            if lib_dirs:
                line = shell.with_env(line, {"LD_LIBRARY_PATH": ":".join(lib_dirs)})
            return sampler.wrap(f"cd {shell.quote(scratch)} && {line}")

        command = tool_command(io_state is not None)
        log.debug("%s: %s", transport.device_id, command)
        result = transport.shell(command, timeout=timeout)
        outputs_fields: dict[str, Any] = {}
        if io_state is not None and not result.timed_out and self.rejects_output_flags(io_state, result):
            # builds that do not know a flag warn and go on (no outputs then); one that stops is run again
            outputs_fields = self.outputs_unavailable(io_state)
            io_state = None
            first = self.parse(transport, result, model_path, scratch)
            if first.ok and result.exit_code == 0:
                notes.append(f"{self.name} does not know the output flags (no on-device parity)")
            else:
                log.info("%s: %s rejects the output flags; running again without them", transport.device_id, self.name)
                notes.append(f"{self.name} rejected the output flags: ran again without them (no on-device parity)")
                result = transport.shell(tool_command(False), timeout=timeout)
        base["raw_output"] = (result.stdout + ("\n" + result.stderr if result.stderr else ""))[-20000:]
        self._probe_after(transport, snap_before, base, notes)

        if result.timed_out:
            return failed(
                f"{self.name} timed out after {timeout:g} s (raise the runner timeout, or lower the iterations)",
                notes=notes,
            )
        parsed = self.parse(transport, result, model_path, scratch)
        base["runtime"] = f"{self.name} ({parsed.variant or 'unrecognised output'})"
        notes.extend(parsed.warnings)
        if not parsed.ok:
            return failed(f"{parsed.reason} [exit {result.exit_code}]", notes=notes)
        if result.exit_code != 0:
            return failed(
                f"{self.name} exited with {result.exit_code} although its output parsed; not trusting it", notes=notes
            )
        fields = parsed.measurement_fields()
        charging = bool(snap_before and snap_before.battery.charging)
        energy_fields = sampler.finish(parsed.latency.median or parsed.latency.mean, charging, notes)
        if io_state is not None:
            outputs_fields = self.check_outputs(transport, io_state, notes)
        return Measurement(status="ok", notes=notes, **fields, **energy_fields, **outputs_fields, **base)

    @staticmethod
    def _probe_before(transport: Transport, base: dict[str, Any], notes: list[str]) -> Any:
        """Device properties, battery, screen and thermal state before the run (into ``base``)."""
        from .. import android

        try:
            props, snap = android.probe(transport)
        except Exception as exc:  # a device without dumpsys/getprop still gets measured
            notes.append(f"device probe failed: {exc}")
            return None
        notes.extend(android.idle_warnings(snap))
        base.update(
            device=android.device_info_from(transport.device_id, props, snap),
            thermal_before=android.snapshot_dict(snap),
            battery_level=snap.battery.level,
        )
        return snap

    @staticmethod
    def _probe_after(transport: Transport, snap_before: Any, base: dict[str, Any], notes: list[str]) -> None:
        """Thermal state after the run, and whether it throttled (into ``base``)."""
        from .. import android

        try:
            snap = android.snapshot(transport)
        except Exception as exc:
            notes.append(f"device probe after the run failed: {exc}")
            return
        base["thermal_after"] = android.snapshot_dict(snap)
        if snap_before is not None:
            reasons = android.throttle_reasons(snap_before, snap)
            base["throttled"] = bool(reasons)
            notes.extend(reasons)


def _big_core_mask(snap: Any) -> str | None:
    from .. import android

    return android.big_core_mask(snap.cpus) if snap is not None else None
