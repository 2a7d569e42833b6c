"""ONNX Runtime sessions, configured for trustworthy interleaved timing.

Intra-op spinning is off: sessions that share a process with PyTorch (or with each other) otherwise steal the
cores from one another (measured: interleaved medians up to 8x off, int8 appearing slower than fp32).

GPU providers: ONNX Runtime falls back to the CPU without an error when a requested provider cannot load (the CPU
build of onnxruntime, a missing CUDA or TensorRT library); a session here fails instead, naming what is missing.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mmcompress.errors import BackendMissing
from mmcompress.runtimes import register
from mmcompress.runtimes.base import Runtime

# recipe runtime -> the providers asked for, in order (the CPU provider runs what the first cannot)
PROVIDERS = {"onnxruntime": ["CPUExecutionProvider"],
             "onnxruntime-cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
             "onnxruntime-tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]}

INSTALL = {"CUDAExecutionProvider": "pip install onnxruntime-gpu (not beside onnxruntime: uninstall that first), "
                                    "with the CUDA and cuDNN versions its release notes name",
           "TensorrtExecutionProvider": "pip install onnxruntime-gpu and TensorRT (pip install tensorrt, or the "
                                        "JetPack's), with the versions onnxruntime-gpu's release notes name"}


def missing_provider(runtime: str) -> str | None:
    """Why `runtime` cannot run here (its provider is not in this onnxruntime build), or None."""
    import onnxruntime as ort

    want = PROVIDERS[runtime][0]
    if want in ort.get_available_providers():
        return None
    return (f"runtime {runtime} needs ONNX Runtime's {want}, and this onnxruntime {ort.__version__} has only "
            f"{', '.join(ort.get_available_providers())}; {INSTALL.get(want, '')}")


def open_file(path: Path, threads: int, name: str | None = None, **kwargs) -> "OrtSession":
    """A session for a graph the user handed us (bench, a bundle's graphs, a gate baseline): a file ONNX Runtime
    cannot open (not ONNX, truncated, an op it lacks) is the user's file error, exit 2 naming it."""
    from mmcompress.errors import RecipeError

    if not Path(path).is_file():
        raise RecipeError(f"{path}: no such file")
    try:
        return OrtSession(path, threads, name, **kwargs)
    except BackendMissing:
        raise
    except Exception as e:  # ONNX Runtime's InvalidProtobuf, Fail, InvalidGraph, NotImplemented ...
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise RecipeError(f"{path}: ONNX Runtime cannot open this graph ({first}); is it an ONNX file, and "
                          f"complete? Copy it again, or rerun the `mmcompress run` that wrote it") from None


class OrtSession:
    def __init__(self, path: Path, threads: int, name: str | None = None, runtime: str = "onnxruntime",
                 as_written: bool = False):
        """as_written: no graph optimisation, so Q/DQ nodes run as written (quantize, dequantize, float op)
        instead of being fused into the CPU's int8 kernels: the arithmetic TensorRT's explicit quantization does,
        on any CPU kind."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if as_written:
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        self.name = name or Path(path).stem
        self.path = Path(path)
        self.runtime = runtime
        providers = PROVIDERS[runtime]
        why = missing_provider(runtime) if runtime != "onnxruntime" else None
        if why:
            raise BackendMissing(f"{path}: {why}")
        self._sess = ort.InferenceSession(str(path), opts, providers=providers)
        if self._sess.get_providers()[0] != providers[0]:  # loaded, but its libraries did not: ORT fell back
            raise BackendMissing(f"{path}: ONNX Runtime did not start {providers[0]} (the session runs on "
                                 f"{', '.join(self._sess.get_providers())}); its CUDA/cuDNN/TensorRT libraries did "
                                 f"not load. {INSTALL.get(providers[0], '')}")
        self._inputs = [i.name for i in self._sess.get_inputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self._sess.run(None, {k: feeds[k] for k in self._inputs})[0]


class OnnxRuntime(Runtime):
    """The variant's ONNX graphs on one ONNX Runtime execution provider (PROVIDERS)."""

    def __init__(self, name: str):
        self.name = name
        self.on_cpu = self.plans = name == "onnxruntime"

    def refuses(self, variant) -> str | None:
        if variant.quantize == "bf16":
            return ("quantize bf16 is for PyTorch runtimes (runtime: torch-cuda or torch-cpu) and runtime openvino; "
                    "ONNX Runtime's graphs take fp16")
        return super().refuses(variant)

    def unavailable(self) -> str | None:
        return None if self.on_cpu else missing_provider(self.name)

    def device(self) -> dict:
        import onnxruntime as ort

        return {"runtime": self.name, "device": "cpu" if self.on_cpu else "cuda", "provider": PROVIDERS[self.name][0],
                "onnxruntime": ort.__version__}

    def session(self, artifact, tower: str, threads: int, name: str | None = None) -> "OrtSession":
        v = artifact.variant
        # a TensorRT-ready int8 graph checked on the CPU: its Q/DQ run as written (TensorRT's arithmetic)
        as_written = self.on_cpu and v.quantize == "static" and getattr(v, "target", "cpu") == "tensorrt"
        return OrtSession(artifact.towers[tower], threads, name, runtime=self.name, as_written=as_written)

    def open(self, path, threads: int, precision: str = "fp32", name: str | None = None) -> "OrtSession":
        return OrtSession(path, threads, name, runtime=self.name)

    def key(self, artifact, tower: str) -> str:
        path = artifact.towers[tower]
        return str(path) if self.on_cpu else f"{self.name}:{path}"


for _name in PROVIDERS:
    register(OnnxRuntime(_name))
