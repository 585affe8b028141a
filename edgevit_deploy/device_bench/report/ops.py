"""``edgevit-bench show --ops ROW``: one row's per-op profile and delegate coverage as a rich table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from rich.table import Table

from ...errors import EdgeVitDeployError
from ..profiles import coverage_label, top, total_ms

#: the row identifiers ``show --ops`` accepts, tried in this order (a store may carry any of them)
ID_KEYS: tuple[str, ...] = ("run_id", "rowid", "id")


class RowNotFoundError(EdgeVitDeployError, LookupError):
    """``show --ops ROW`` names no row of the store (bad input: exit 2)."""

    exit_code: ClassVar[int] = 2


def number_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with their 1-based position in the store's listing as ``row`` (what ``show`` prints as ``#``)."""
    return [{**r, "row": i} for i, r in enumerate(rows, 1)]


def find_row(rows: Sequence[dict[str, Any]], ref: str) -> dict[str, Any]:
    """The row ``ref`` names: a run id (or a unique prefix of one), else the ``#`` number ``show`` prints."""
    ref = str(ref).strip()
    for key in ID_KEYS:
        exact = [r for r in rows if r.get(key) is not None and str(r[key]) == ref]
        if len(exact) == 1:
            return exact[0]
        prefixed = [r for r in rows if r.get(key) is not None and str(r[key]).startswith(ref)] if ref else []
        if len(prefixed) == 1 and not ref.isdigit():
            return prefixed[0]
        if len(prefixed) > 1 and not ref.isdigit():
            raise RowNotFoundError(f"{ref!r} matches {len(prefixed)} rows' {key}; give more of it")
    if ref.isdigit() and 1 <= int(ref) <= len(rows):
        return rows[int(ref) - 1]
    raise RowNotFoundError(
        f"no row {ref!r} in the store ({len(rows)} rows): give the # that `edgevit-bench show` prints, or a run id"
    )


def row_title(row: dict[str, Any]) -> str:
    return f"{row['model']} {row['target']} {row['precision']} {row['threads']}t {row['delegate']} @{row['device']}"


def ops_table(row: dict[str, Any], n: int = 15) -> Table:
    """The top ``n`` ops by time (op, node, ms, %, count), with the total and the row's median in the caption."""
    ops = row.get("op_profile") or []
    table = Table(title=f"top ops: {row_title(row)}")
    for name, justify in (("op", "left"), ("node", "left"), ("ms", "right"), ("%", "right"), ("count", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in top(ops, n):
        table.add_row(str(r["op"]), str(r["node"])[:70], f"{r['ms']:.4f}", f"{r['pct']:.1f}", str(r["count"]))
    median = row.get("median_ms")
    caption = [f"{len(ops)} ops, {total_ms(ops):.3f} ms in all"]
    if median is not None:
        caption.append(f"median latency {median:.3f} ms")
    cov = row.get("delegate_coverage") or {}
    if cov:
        caption.append(f"delegate {cov.get('delegate')}: {coverage_label(cov)}")
    table.caption = "; ".join(caption)
    return table


def no_ops_reason(row: dict[str, Any]) -> str:
    """Why a row has no op table (its notes say when the runner could not profile)."""
    said = [n for n in row.get("notes") or [] if "op profile" in str(n)]
    if said:
        return "; ".join(str(n) for n in said)
    return "it was measured without --profile (run it again with `edgevit-bench run ... --profile`)"
