"""Budgets -> verdicts. Each budget becomes one row per tower / batch / text length it applies to, so a failure
names exactly which figure missed which limit. A tower the variant does not own (it stays the fp32 export)
gets rows marked not gated (passed None) instead of a silent pass.

The rules are checks/board_check.py's, the module every Jetson bundle ships as its check.py: a variant is
judged by the same code in the run's report and on the board."""
from __future__ import annotations

from mmcompress.checks import board_check
from mmcompress.checks.board_check import NOT_OWN, UNDECIDED, describe, verdict  # noqa: F401
from mmcompress.recipe import Budgets


def evaluate(artifact: dict, budgets: Budgets) -> list[dict]:
    """artifact: the report entry of one candidate (accuracy, fidelity, latency, size_mb, towers with 'gated')."""
    return board_check.evaluate(artifact, budgets.model_dump())
