"""Keep converters' own console output out of the user's terminal (the library logs; the CLI prints)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator

log = logging.getLogger("edgevit_deploy.converters.backend")


@contextlib.contextmanager
def quiet_backends() -> Iterator[None]:
    """Silence litert-torch's progress console and route stray ``print`` output to the debug log."""
    progress = sys.modules.get("litert_torch.progress")  # only if a converter already imported it
    console = getattr(progress, "console", None)
    was_quiet = getattr(console, "quiet", False)
    if console is not None:
        console.quiet = True
    buf = io.StringIO()
    try:
        # coremltools' and ai-edge-quantizer's tqdm bars write to stderr; exceptions still propagate
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            yield
    finally:
        if console is not None:
            console.quiet = was_quiet
        text = buf.getvalue().strip()
        if text:
            log.debug("%s", text)


_native_lock = threading.RLock()
_native_depth = 0


@contextlib.contextmanager
def native_output_to_log() -> Iterator[None]:
    """Native libraries (absl / TensorFlow, LiteRT's delegate INFO line, ExecuTorch's cpuinfo and threadpool
    lines) write to file descriptors 1 and 2 directly, past ``sys.stdout``: point both descriptors at a
    temporary file while ``body`` runs, then log what was written at debug level (``-vv`` shows it).
    Reentrant; one capture at a time in the process (the descriptors are process-wide)."""
    global _native_depth
    with _native_lock:
        if _native_depth or not _fds_usable():
            _native_depth += 1
            try:
                yield
            finally:
                _native_depth -= 1
            return
        _native_depth += 1
        sys.stdout.flush()
        sys.stderr.flush()
        saved = (os.dup(1), os.dup(2))
        try:
            with tempfile.TemporaryFile() as tmp:
                os.dup2(tmp.fileno(), 1)
                os.dup2(tmp.fileno(), 2)
                try:
                    yield
                finally:
                    with contextlib.suppress(Exception):
                        sys.stdout.flush()
                        sys.stderr.flush()
                    os.dup2(saved[0], 1)
                    os.dup2(saved[1], 2)
                    tmp.seek(0)
                    text = tmp.read().decode("utf-8", "replace").strip()
                    if text:
                        log.debug("native output: %s", text)
        finally:
            os.close(saved[0])
            os.close(saved[1])
            _native_depth -= 1


def _fds_usable() -> bool:
    """Descriptors 1 and 2 exist (not under a daemon without them)."""
    try:
        os.fstat(1)
        os.fstat(2)
    except OSError:
        return False
    return True
