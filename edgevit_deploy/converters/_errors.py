"""Pull the name of an unsupported op out of a converter's error message, where it says one."""

from __future__ import annotations

import re

_PATTERNS = (
    r"[Uu]nsupported fx node:?\s*'?([\w.:]+)",
    r"[Uu]nsupported op(?:erator|eration)?[:\s]+'?([\w.:]+)",
    r"Exporting the operator '?([\w.:]+)'? to ONNX opset version \d+ is not supported",
    r"PyTorch convert function for op '([\w.]+)' not implemented",
    r"[Nn]o (?:lowering|decomposition|conversion) (?:found )?for '?([\w.:]+)",
    r"'([\w.]+)' is not supported",
)


def unsupported_op_from(message: str) -> str | None:
    for pat in _PATTERNS:
        m = re.search(pat, message)
        if m:
            return m.group(1)
    return None
