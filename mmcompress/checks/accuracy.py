"""Task accuracy of a dual encoder on held-out data: zero-shot top-1 and image<->text recall@k.

Captions may repeat (the shapes set has 60 distinct captions), so retrieval ranks the *distinct* captions and a
retrieved item counts as correct when its caption equals the query's caption.
"""
from __future__ import annotations

# one implementation for the run and for the board-side check (checks/board_check.py ships in every bundle)
from mmcompress.checks.board_check import (auc, knn, normalize, pair_recall, recall, zero_shot,  # noqa: F401
                                           zero_shot_scores)
