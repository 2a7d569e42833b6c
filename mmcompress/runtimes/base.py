"""One interface for every runtime: a Session maps numpy feeds to the (N, D) embedding."""
from __future__ import annotations

from typing import Protocol

import numpy as np


class Session(Protocol):
    name: str

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """feeds: input name -> array (batch first). Returns float32 (N, D)."""
        ...


def trim_padding(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Text feeds cut to the columns any row uses (attention_mask): a batch padded to its own longest row.
    Works for right and left padding; feeds without an attention_mask are returned as they are."""
    mask = feeds.get("attention_mask")
    if mask is None or mask.ndim != 2 or mask.shape[1] == 0:
        return feeds
    used = np.flatnonzero(mask.any(0))
    if len(used) == 0:
        return feeds
    lo, hi = int(used[0]), int(used[-1]) + 1
    if (lo, hi) == (0, mask.shape[1]):
        return feeds
    return {k: np.ascontiguousarray(v[:, lo:hi]) if v.ndim == 2 and v.shape == mask.shape else v
            for k, v in feeds.items()}


EVAL_BATCH = 64  # rows per call when running a whole split


def run_batched(session: Session, feeds: dict[str, np.ndarray], batch: int = EVAL_BATCH, progress=None,
                trim: bool = False) -> np.ndarray:
    """Run over all rows of `feeds` in batches; progress(n) is called with the rows done so far.
    trim: cut each text batch to its longest row (trim_padding), as a serving stack pads."""
    n = len(next(iter(feeds.values())))
    outs = []
    for i in range(0, n, batch):
        part = {k: v[i:i + batch] for k, v in feeds.items()}
        outs.append(session.run(trim_padding(part) if trim else part))
        if progress:
            progress(min(i + batch, n))
    return np.concatenate(outs).astype(np.float32)
