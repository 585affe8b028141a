"""The committed docs/support_matrix.json agrees with the tests' own expectation table
(tests/helpers/zoo_expectations.py): a regenerated matrix that breaks a cell, drops one, adds one, or changes
a cell's random init or input size fails here, instead of silently changing which export tests run."""
from __future__ import annotations

from helpers.zoo_expectations import ZOO_EXPECTATIONS, expected_cells, matrix_cells
from helpers.zoo_fixtures import ALL_MODELS, small_size


def test_committed_matrix_agrees_with_the_expectation_table():
    problems = []
    if set(ZOO_EXPECTATIONS) != set(ALL_MODELS):
        problems.append(f"registered but not in the table: {sorted(set(ALL_MODELS) - set(ZOO_EXPECTATIONS))}; "
                        f"in the table but not registered: {sorted(set(ZOO_EXPECTATIONS) - set(ALL_MODELS))}")
    want = expected_cells()
    got = {(c["model"], c["target"], c["precision"]): c for c in matrix_cells()}
    for key in sorted(set(want) | set(got)):
        cell, expected, where = got.get(key), want.get(key), "/".join(key)
        if cell is None:
            problems.append(f"{where}: the table expects {expected.value}; the matrix has no such cell")
        elif expected is None:
            problems.append(f"{where}: the matrix has a {cell['status']} cell the table does not list")
        else:
            if cell["status"] != expected.value:
                problems.append(f"{where}: the table expects {expected.value}, the matrix says {cell['status']} "
                                f"({cell.get('reason')})")
            model = key[0]
            if (cell.get("random_init") or "default") != ZOO_EXPECTATIONS[model].random_init:
                problems.append(f"{where}: the matrix used random init {cell.get('random_init')!r}, the table "
                                f"{ZOO_EXPECTATIONS[model].random_init!r}")
            if model in ALL_MODELS and cell["img_size"] != small_size(model):
                problems.append(f"{where}: the matrix ran at {cell['img_size']} px, the tests at "
                                f"{small_size(model)} px")
    assert not problems, "docs/support_matrix.json and tests/helpers/zoo_expectations.py disagree:\n" + "\n".join(
        problems)
