"""Building device shell command lines safely: every path and argument goes through shlex.quote."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence

EXIT_MARKER = "__EDGEVIT_EXIT__:"
_MARKER_RE = re.compile(re.escape(EXIT_MARKER) + r"(\d+)\s*$")


def quote(arg: object) -> str:
    return shlex.quote(str(arg))


def join(args: Sequence[object]) -> str:
    """A command line from arguments, each one quoted (``shlex.join`` for non-str arguments too)."""
    return " ".join(quote(a) for a in args)


def with_exit_marker(command: str) -> str:
    """Append an exit-code marker for shell v1, which carries no exit code. The command runs in a
    subshell so an ``exit`` inside it still reaches the marker."""
    return f"( {command} ); echo {EXIT_MARKER}$?"


def split_exit_marker(output: str) -> tuple[str, int | None]:
    """(output without the marker line, exit code) or (output, None) when the marker is missing
    (the connection dropped or the command never finished)."""
    stripped = output.rstrip("\r\n")
    match = _MARKER_RE.search(stripped)
    if match is None:
        return output, None
    return stripped[: match.start()], int(match.group(1))


def cpu_mask(cpus: Iterable[int]) -> str:
    """The hex ``taskset`` mask of CPU indices, e.g. [4, 5, 6, 7] -> "f0"."""
    mask = 0
    for cpu in cpus:
        if cpu < 0:
            raise ValueError(f"CPU index must be >= 0, got {cpu}")
        mask |= 1 << cpu
    if not mask:
        raise ValueError("a taskset mask needs at least one CPU")
    return format(mask, "x")


def parse_cpu_list(text: str) -> list[int]:
    """Kernel CPU lists such as "0-3,6" (``/sys/devices/system/cpu/possible``, ``related_cpus`` uses spaces)."""
    cpus: list[int] = []
    for part in re.split(r"[,\s]+", text.strip()):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise ValueError(f"not a CPU list: {text!r}")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def validate_mask(mask: str) -> str:
    """A taskset mask must be hexadecimal (with optional 0x); anything else is refused before it reaches a shell."""
    if not re.fullmatch(r"(0x)?[0-9a-fA-F]+", mask or "") or int(mask, 16) == 0:
        raise ValueError(f"taskset mask must be a non-zero hex number such as 'f0' (CPUs 4-7), got {mask!r}")
    return mask.lower().removeprefix("0x")


def pinned(args: Sequence[object], mask: str | None) -> str:
    """The quoted command line, prefixed with ``taskset MASK`` when a mask is given."""
    line = join(args)
    return f"taskset {validate_mask(mask)} {line}" if mask else line


def with_env(command: str, env: dict[str, str]) -> str:
    """Prefix ``VAR=value`` assignments (values quoted; names must be identifiers)."""
    parts = []
    for name, value in env.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"not an environment variable name: {name!r}")
        parts.append(f"{name}={quote(value)}")
    return " ".join([*parts, command]) if parts else command
