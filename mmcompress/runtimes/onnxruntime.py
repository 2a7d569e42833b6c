"""ONNX Runtime sessions, configured for trustworthy interleaved timing.

Intra-op spinning is off: sessions that share a process with PyTorch (or with each other) otherwise steal the
cores from one another (measured: interleaved medians up to 8x off, int8 appearing slower than fp32).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


class OrtSession:
    def __init__(self, path: Path, threads: int, name: str | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        self.name = name or Path(path).stem
        self.path = Path(path)
        self._sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self._inputs = [i.name for i in self._sess.get_inputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self._sess.run(None, {k: feeds[k] for k in self._inputs})[0]
