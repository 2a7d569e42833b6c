"""PyTorch eager sessions: the teacher as the user runs it today (fp32, no_grad)."""
from __future__ import annotations

import numpy as np
import torch

# untimed pause after each timed call on the CPU: PyTorch's OpenMP threads spin ~10 ms after a call and would take
# a core from the next session timed in the same rotation (checks.latency)
CPU_SETTLE_S = 0.05


class TorchSession:
    def __init__(self, module: torch.nn.Module, input_names: list[str], name: str = "torch",
                 device: torch.device | None = None):
        """device: where the module lives (inputs go there, outputs come back to the CPU); default the CPU."""
        self.name = name
        self.module = module.eval()
        self._inputs = input_names
        self._device = device
        self.settle_s = CPU_SETTLE_S if device is None or torch.device(device).type == "cpu" else 0.0

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            out = self.module(*[torch.from_numpy(np.ascontiguousarray(feeds[k])).to(self._device or "cpu")
                                for k in self._inputs])
        return out.float().cpu().numpy()
