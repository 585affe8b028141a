"""Artifacts for benchmarks: export what is missing, cached by content hash; push once per device.

The cache key hashes the model name, its weights (checkpoint sha256, or the packaged / random-init
marker), the target, precision, input size and the toolkit version; an artifact is exported at most
once per key (``edgevit_deploy.export(..., verify=False)``), and pushed to a device only when
the device does not already hold a file with the same sha256.

A job with ``artifact_path`` (a file the user gave: ``edgevit-bench run FILE``, ``sweep --artifacts DIR``)
is never exported nor copied on the host: the cache hands back that very path, with its sha256 and the parity
figures of its folder's report.json (``artifact_inputs``). On a device it lands under a folder named by its
sha256 (:func:`remote_path`), so two different files of one model and variant never share a remote name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import EdgeVitDeployError
from ..export_common import artifact_size
from .errors import DeviceFullError
from .host_worker import TORCH_TARGET
from .types import BenchJob, Transport

log = logging.getLogger(__name__)

MANIFEST = "artifact.json"
#: a temp export folder is ``.KEY-pidPID-RANDOM``; 0.1.0 wrote ``.KEY-RANDOM`` (no pid): removed past this age
LEGACY_TEMP_MAX_AGE_S = 3600.0
_TEMP_DIR = re.compile(r"^\.[0-9a-f]{24}-(?:pid(?P<pid>\d+)-)?[^/]+$")


class ArtifactError(EdgeVitDeployError, RuntimeError):
    """An artifact could not be produced for a benchmark job (the job's row records the reason)."""


@dataclass(frozen=True)
class Artifact:
    path: Path
    sha256: str
    size_bytes: int
    key: str
    parity: dict[str, Any] = field(default_factory=dict, compare=False)  # a given file's report.json figures


@dataclass(frozen=True)
class ArtifactRequest:
    """What identifies an artifact's content."""

    model: str
    target: str
    precision: str
    img_size: int
    checkpoint: str | None = None

    @classmethod
    def from_job(cls, job: BenchJob, checkpoint: str | None = None) -> ArtifactRequest:
        return cls(job.model, job.target, job.precision, job.img_size, checkpoint)

    def weights_id(self) -> str:
        if self.checkpoint:
            return sha256_of(Path(self.checkpoint))
        from ..models import get_model_config

        return get_model_config(self.model).pretrained or "random-init"

    def cache_key(self) -> str:
        blob = json.dumps(
            {
                "model": self.model,
                "weights": self.weights_id(),
                "target": self.target,
                "precision": self.precision,
                "img_size": self.img_size,
                "toolkit": __version__,
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:24]


def sha256_of(path: Path) -> str:
    """THE digest of an artifact, the ``artifact_sha256`` of every row: for a file, the sha256 of its bytes (what
    ``sha256sum`` prints); for a package folder (``.mlpackage``), one sha256 over its regular files in sorted
    order of their POSIX relative names, each contributing its name, a NUL byte, then its bytes. The same
    function writes ``report.json``'s ``sha256`` (``edgevit_deploy._atomic.sha256_of``), so a row and its
    export report match; it does not depend on file times, permissions or the OS's path separator."""
    from .._atomic import sha256_of as digest

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such artifact: {path}")
    return digest(path)


size_of = artifact_size  # one definition (edgevit_deploy.export_common)


def export_options(target: str, precision: str) -> Any:
    """ExportOptions for a sweep precision ("fp32", "fp16", or a quantization mode such as "int8"),
    validated against the target table (raises UnsupportedOptionError naming what the target has)."""
    from ..converters.base import ExportOptions, Variant
    from ..converters.table import get_spec

    try:
        variant = Variant(precision)
    except ValueError:
        raise ArtifactError(
            f"unknown precision {precision!r}; use one of {', '.join(v.value for v in Variant)}"
        ) from None
    options = ExportOptions.for_variant(variant)
    get_spec(target).validate(options)
    return options


Exporter = Callable[[ArtifactRequest, Path], Path]


def toolkit_exporter(req: ArtifactRequest, out_dir: Path) -> Path:
    """Export with the toolkit's public API, without the parity check (sweeps measure speed)."""
    from ..export_api import export

    options = export_options(req.target, req.precision)
    result = export(
        req.model, req.target, out_dir, options=options, checkpoint=req.checkpoint, img_size=req.img_size, verify=False
    )
    art = result.artifacts[0]
    if art.error or art.path is None:
        raise ArtifactError(art.error or "the export produced no artifact")
    return Path(art.path)


def torch_spec_exporter(req: ArtifactRequest, out_dir: Path) -> Path:
    """Target ``torch`` (eager baseline): the "artifact" is the spec the host worker builds the model from."""
    if req.precision != "fp32":
        raise ArtifactError(f"torch eager runs fp32 only, got {req.precision!r}")
    path = out_dir / f"{req.model.replace(':', '_').replace('/', '_')}-fp32.torch.json"
    path.write_text(json.dumps({"model": req.model, "img_size": req.img_size, "checkpoint": req.checkpoint}))
    return path


class ArtifactCache:
    """Exports into ``cache_dir/<key>/`` once per content key; thread-safe (exports run one at a time,
    conversions are CPU-bound and share the host with measurements)."""

    def __init__(self, cache_dir: str | Path, exporter: Exporter | None = None, checkpoint: str | None = None):
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.removed_stale = self._remove_stale_temp_dirs()
        self._exporter = exporter
        self.checkpoint = checkpoint
        self._lock = threading.Lock()
        self.exported = 0  # how many exports this cache ran (the rest were hits)
        self._given: dict[tuple[str, int, int], Artifact] = {}  # given files: (path, size, mtime) -> Artifact

    def _remove_stale_temp_dirs(self) -> int:
        """Temp export folders of processes that died (``kill -9``) mid-export; a live process's are kept."""
        removed = 0
        for entry in self.cache_dir.iterdir():
            match = _TEMP_DIR.match(entry.name)
            if not match or not entry.is_dir():
                continue
            if match["pid"] is not None:
                stale = not _pid_alive(int(match["pid"]))
            else:
                try:
                    stale = time.time() - entry.stat().st_mtime > LEGACY_TEMP_MAX_AGE_S
                except OSError:
                    continue
            if stale:
                log.info("removing %s (left by an export that was killed)", entry)
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        return removed

    def _export_fn(self, req: ArtifactRequest) -> Exporter:
        if req.target == TORCH_TARGET:
            return torch_spec_exporter
        return self._exporter or toolkit_exporter

    def lookup(self, req: ArtifactRequest) -> Artifact | None:
        key = req.cache_key()
        manifest = self.cache_dir / key / MANIFEST
        if not manifest.is_file():
            return None
        data = json.loads(manifest.read_text())
        path = self.cache_dir / key / data["file"]
        if not path.exists():
            return None
        return Artifact(path=path, sha256=data["sha256"], size_bytes=int(data["size_bytes"]), key=key)

    def given(self, path: str | Path) -> Artifact:
        """A file the user gave, as it is (no export, no copy): its sha256 (memoized while its size and
        mtime stay) and its folder's report.json parity figures for these bytes."""
        from .artifact_inputs import REPORT_NAME, read_report, report_parity, report_row

        path = Path(path)
        try:
            st = path.stat()
        except OSError as exc:
            raise ArtifactError(f"the given artifact {path} cannot be read: {exc.strerror or exc}") from None
        memo = (str(path.absolute()), st.st_size, st.st_mtime_ns)
        with self._lock:
            hit = self._given.get(memo)
        if hit is not None:
            return hit
        sha = sha256_of(path)
        parity = report_parity(report_row(read_report(path.parent), path, sha), path.parent / REPORT_NAME)
        art = Artifact(path=path, sha256=sha, size_bytes=size_of(path), key=f"given-{sha[:24]}", parity=parity)
        with self._lock:
            self._given[memo] = art
        return art

    def ensure(self, job: BenchJob) -> Artifact:
        if job.artifact_path:
            return self.given(job.artifact_path)
        req = ArtifactRequest.from_job(job, self.checkpoint)
        with self._lock:
            hit = self.lookup(req)
            if hit is not None:
                return hit
            key = req.cache_key()
            final = self.cache_dir / key
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}-pid{os.getpid()}-", dir=self.cache_dir))
            try:
                log.info("exporting %s -> %s %s (img %d)", req.model, req.target, req.precision, req.img_size)
                produced = Path(self._export_fn(req)(req, tmp))
                if not produced.exists():
                    raise ArtifactError(f"the exporter reported {produced} but wrote nothing there")
                rel = produced.relative_to(tmp)
                manifest = {
                    "file": str(rel),
                    "sha256": sha256_of(produced),
                    "size_bytes": size_of(produced),
                    "request": req.__dict__,
                    "toolkit_version": __version__,
                }
                (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
                shutil.rmtree(final, ignore_errors=True)
                os.replace(tmp, final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            self.exported += 1
            found = self.lookup(req)
            assert found is not None
            return found


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def measurement_base(job: BenchJob, artifact: Artifact | None = None, runtime: str = "") -> dict[str, Any]:
    """The fields every Measurement of ``job`` carries, measured or failed."""
    return {
        "job": job,
        "runtime": runtime,
        "input_shape": [1, 3, job.img_size, job.img_size],
        "model_size_bytes": artifact.size_bytes if artifact else None,
        "artifact_sha256": artifact.sha256 if artifact else None,
        "toolkit_version": __version__,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def remote_path(transport: Transport, artifact: Artifact) -> str:
    return f"{transport.work_dir.rstrip('/')}/artifacts/{artifact.sha256[:16]}/{artifact.path.name}"


def _remote_sha256(transport: Transport, remote: str) -> str | None:
    res = transport.shell(
        f"sha256sum {shlex.quote(remote)} 2>/dev/null || shasum -a 256 {shlex.quote(remote)}", timeout=120
    )
    if not res.ok or not res.stdout.strip():
        return None
    return res.stdout.split()[0].lower()


def push_once(transport: Transport, artifact: Artifact) -> str:
    """Put ``artifact`` on the device (under a sha-named folder of its work dir) unless an identical
    copy is already there; return the remote path. Raises DeviceFullError when it cannot fit."""
    remote = remote_path(transport, artifact)
    if transport.exists(remote) and (artifact.path.is_dir() or _remote_sha256(transport, remote) == artifact.sha256):
        log.debug("%s: %s already on the device", transport.device_id, remote)
        return remote
    parent = remote.rsplit("/", 1)[0]
    transport.shell(f"mkdir -p {shlex.quote(parent)}", timeout=60)
    free = transport.free_space(parent)
    if free is not None and 0 <= free < artifact.size_bytes:
        raise DeviceFullError(transport.device_id, parent, free, artifact.size_bytes)
    log.info("%s: pushing %s (%d bytes)", transport.device_id, artifact.path.name, artifact.size_bytes)
    transport.push(artifact.path, remote)
    return remote
