"""Keep converters' own console output out of the user's terminal (the library logs; the CLI prints)."""

from __future__ import annotations

import contextlib
import io
import logging
import sys
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
