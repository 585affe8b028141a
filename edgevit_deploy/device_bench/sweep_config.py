"""What a sweep covers: models x targets x precisions x threads x delegates x devices, from flags or a
YAML / TOML sweep file (flags given on the command line override the file's values).

Example ``sweep.yaml``::

    models: [edgevit_xxs, edgevit_xs, mobilenetv2_100]
    targets: [tflite, onnx]
    precisions: [fp32, int8]
    threads: [1, 4]
    delegates: [xnnpack]
    devices: [adb:R58N12345, local]
    img_size: 224
    warmup: 10
    iterations: 50
    cooldown_s: 2
    runners:
      benchmark_model: ~/bin/benchmark_model_arm64

Shipped files instead of models (``artifacts:``, ``--artifacts DIR``): the files of an ``edgevit-export``
output folder, each timed as it is across devices x threads x delegates; model, target, variant and input
size come from each file (``artifact_inputs``), so ``models`` / ``targets`` / ``precisions`` are not given::

    artifacts: out/xxs-int8
    devices: [adb:R58N12345]
    threads: [1, 4]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomllib

from ..errors import EdgeVitDeployError
from .types import BenchJob

EXTRA_TARGETS = ("torch",)  # host-only baseline next to the target table's formats
RUNNER_CHOICES = ("default", "app", "instrument")  # how Android rows are measured ("tool" = "default")


class SweepConfigError(EdgeVitDeployError, ValueError):
    """A sweep file or flag value that cannot be used; the message names the key and what is allowed."""


def _split(value: Any) -> list[str]:
    """A list from ``"a,b"`` or ``[a, b]``, without blanks or repeats (first occurrence kept)."""
    if value is None:
        return []
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
    else:
        items = [str(value)]
    return list(dict.fromkeys(v.strip() for v in items if v.strip()))


def known_targets() -> list[str]:
    from ..converters.table import target_names

    return [*target_names(), *EXTRA_TARGETS]


@dataclass
class SweepSpec:
    models: list[str]
    targets: list[str] = field(default_factory=lambda: ["onnx", "tflite"])
    precisions: list[str] = field(default_factory=lambda: ["fp32"])
    threads: list[int] = field(default_factory=lambda: [1])
    delegates: list[str] = field(default_factory=lambda: ["cpu"])
    devices: list[str] = field(default_factory=lambda: ["local"])
    img_size: int | None = None  # None: each model's default input size
    warmup: int = 10
    iterations: int = 50
    cooldown_s: float = 0.0
    cpu_mask: str | None = None
    retry_failed: bool = True  # rerun rows that failed before (completed ok rows are always skipped)
    checkpoint: str | None = None
    runners: dict[str, Any] = field(default_factory=dict)  # RunnerConfig keys
    runner: str = "default"  # Android: "default" (tool binaries), "app" or "instrument" (the benchmark app)
    artifacts: str | None = None  # an edgevit-export --out folder: time its files instead of exporting models
    allow_failed_parity: bool = False  # time files whose report.json parity check failed (else refused)
    profile: bool = False  # per-op profiles where the runner can (BenchJob.profile)
    _given: list[Any] | None = field(default=None, init=False, repr=False, compare=False)  # resolved artifacts

    def __post_init__(self) -> None:
        if self.artifacts is not None:
            self.artifacts = str(self.artifacts)
        self.models = _split(self.models)
        self.targets = [t.lower() for t in _split(self.targets)]
        self.precisions = [p.lower() for p in _split(self.precisions)]
        self.delegates = [d.lower() for d in _split(self.delegates)]
        self.devices = _split(self.devices)
        try:
            self.threads = [int(t) for t in _split(self.threads)]
        except ValueError:
            raise SweepConfigError(f"threads must be integers, got {self.threads!r}") from None
        self.validate()

    def validate(self) -> None:
        problems = []
        for name in ("models", "targets", "precisions", "threads", "delegates", "devices"):
            if not getattr(self, name) and not (self.artifacts and name == "models"):
                problems.append(f"{name} is empty")
        if self.artifacts and self.models:
            problems.append(
                "'models' and 'artifacts' exclude each other (the files of an artifacts folder name their models)"
            )
        unknown = [t for t in self.targets if t not in known_targets()]
        if unknown:
            problems.append(f"unknown targets {unknown} (choose from {', '.join(known_targets())})")
        if any(t < 1 for t in self.threads):
            problems.append(f"threads must be >= 1, got {self.threads}")
        if self.img_size is not None and self.img_size < 8:
            problems.append(f"img_size must be >= 8, got {self.img_size}")
        if self.iterations < 1 or self.warmup < 0:
            problems.append(f"iterations must be >= 1 and warmup >= 0 (got {self.iterations}, {self.warmup})")
        if self.runner == "tool":
            self.runner = "default"
        if self.runner not in RUNNER_CHOICES:
            problems.append(f"runner must be one of tool, app, instrument; got {self.runner!r}")
        if self.cooldown_s < 0:
            problems.append(f"cooldown_s must be >= 0, got {self.cooldown_s}")
        if problems:
            raise SweepConfigError("invalid sweep: " + "; ".join(problems))

    # ---------------------------------------------------------------------------------------- jobs
    def given_artifacts(self) -> list[Any]:
        """The files of ``artifacts`` (``artifact_inputs.GivenArtifact``), read once; bad input raises."""
        if self._given is None:
            if not self.artifacts:
                return []
            from .artifact_inputs import folder_artifacts, refuse_failed_parity

            given = folder_artifacts(self.artifacts, img_size=self.img_size)
            refuse_failed_parity(given, self.allow_failed_parity)
            self._given = given
        return list(self._given)

    def with_given(self, given: list[Any]) -> SweepSpec:
        """This spec timing ``given`` (already resolved ``GivenArtifact`` objects, e.g. one file of ``run``)."""
        self._given = list(given)
        return self

    def jobs(self) -> list[BenchJob]:
        """Every row, device-major (each device works through its own list), models interleaved last
        so that a partial sweep already covers every format of the first model. With artifacts: each file
        across threads x delegates, on each device, in the report's order."""
        from ..models import get_model_config

        given = self.given_artifacts() if (self.artifacts or self._given is not None) else []
        if given:
            return [
                BenchJob(
                    model=a.model,
                    target=a.target,
                    precision=a.precision,
                    threads=n,
                    delegate=d,
                    device=dev,
                    img_size=a.img_size,
                    warmup=self.warmup,
                    iterations=self.iterations,
                    cpu_mask=self.cpu_mask,
                    cooldown_s=self.cooldown_s,
                    runner="default" if dev == "local" else self.runner,
                    artifact_path=str(a.path),
                    profile=self.profile,
                )
                for dev in self.devices
                for a in given
                for n in self.threads
                for d in self.delegates
            ]

        sizes = {m: self.img_size or get_model_config(m).img_size for m in self.models}
        return [
            BenchJob(
                model=m,
                target=t,
                precision=p,
                threads=n,
                delegate=d,
                device=dev,
                img_size=sizes[m],
                warmup=self.warmup,
                iterations=self.iterations,
                cpu_mask=self.cpu_mask,
                cooldown_s=self.cooldown_s,
                runner="default" if dev == "local" else self.runner,
                profile=self.profile,
            )
            for dev in self.devices
            for m in self.models
            for t in self.targets
            for p in self.precisions
            for n in self.threads
            for d in self.delegates
        ]

    # ------------------------------------------------------------------------------------- loading
    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SweepSpec:
        aliases = {
            "precision": "precisions",
            "model": "models",
            "target": "targets",
            "device": "devices",
            "delegate": "delegates",
            "cooldown": "cooldown_s",
            "runner": "runners",
        }
        # "runner: app" chooses the Android runner; "runner:" holding a mapping is the old spelling of "runners:"
        norm = {
            (
                "runner"
                if k == "runner" and isinstance(v, str)
                else aliases.get(str(k).replace("-", "_"), str(k).replace("-", "_"))
            ): v
            for k, v in data.items()
        }
        known = {f.name for f in fields(cls) if f.init}
        unknown = sorted(set(norm) - known)
        if unknown:
            raise SweepConfigError(f"unknown sweep keys {unknown}; known keys: {sorted(known)}")
        if "models" not in norm and not norm.get("artifacts"):
            raise SweepConfigError("a sweep needs 'models' (e.g. models: [edgevit_xxs]) or 'artifacts' (a folder)")
        if norm.get("artifacts") and {"targets", "precisions"} & set(norm):
            raise SweepConfigError(
                "'targets' and 'precisions' do not apply with 'artifacts' (each file names its own); remove them"
            )
        norm.setdefault("models", [])
        try:
            return cls(**norm)
        except TypeError as exc:
            raise SweepConfigError(f"invalid sweep value: {exc}") from None

    @classmethod
    def load(cls, path: str | Path) -> SweepSpec:
        return cls.from_mapping(read_sweep_file(path))

    def with_overrides(self, **overrides: Any) -> SweepSpec:
        """A copy with every non-None override applied (flags over file values)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def read_sweep_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise SweepConfigError(f"sweep file not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise SweepConfigError(f"{path} is not a text file (not UTF-8); give a YAML, TOML or JSON sweep file") from None
    except OSError as exc:
        raise SweepConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    if "\0" in text:
        raise SweepConfigError(f"{path} is a binary file (it holds NUL bytes); give a YAML, TOML or JSON sweep file")
    try:
        if path.suffix.lower() == ".toml":
            data: Any = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml", ".json"):
            import yaml

            data = yaml.safe_load(text)
        else:
            raise SweepConfigError(f"{path}: use a .yaml, .yml, .toml or .json sweep file")
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        if isinstance(exc, SweepConfigError):
            raise
        raise SweepConfigError(f"{path} does not parse: {exc}") from None
    except Exception as exc:  # yaml.YAMLError, imported lazily
        raise SweepConfigError(f"{path} does not parse: {exc}") from None
    if not isinstance(data, dict):
        raise SweepConfigError(f"{path}: the top level must be a mapping of sweep keys")
    if isinstance(data.get("sweep"), dict):
        data = data["sweep"]
    return data
