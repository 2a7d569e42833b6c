"""One interface for every runtime: a Session maps numpy feeds to the (N, D) embedding."""
from __future__ import annotations

from typing import Protocol

import numpy as np


class Session(Protocol):
    name: str

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """feeds: input name -> array (batch first). Returns float32 (N, D)."""
        ...


def run_batched(session: Session, feeds: dict[str, np.ndarray], batch: int = 64, progress=None) -> np.ndarray:
    """Run over all rows of `feeds` in batches; progress(n) is called with the rows done so far."""
    n = len(next(iter(feeds.values())))
    outs = []
    for i in range(0, n, batch):
        outs.append(session.run({k: v[i:i + batch] for k, v in feeds.items()}))
        if progress:
            progress(min(i + batch, n))
    return np.concatenate(outs).astype(np.float32)
