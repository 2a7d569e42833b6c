"""PyTorch eager sessions: the teacher as the user runs it today (fp32, no_grad)."""
from __future__ import annotations

import numpy as np
import torch


class TorchSession:
    def __init__(self, module: torch.nn.Module, input_names: list[str], name: str = "torch"):
        self.name = name
        self.module = module.eval()
        self._inputs = input_names

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            out = self.module(*[torch.from_numpy(np.ascontiguousarray(feeds[k])) for k in self._inputs])
        return out.float().numpy()
