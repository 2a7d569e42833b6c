"""PyTorch eager sessions: the teacher as the user runs it today (fp32, no_grad), and the `torch-cpu` /
`torch-cuda` runtimes (the model itself cast to fp16 or bf16 on that device)."""
from __future__ import annotations

import copy

import numpy as np
import torch

from mmcompress.runtimes import register
from mmcompress.runtimes.base import Runtime

# untimed pause after each timed call on the CPU: PyTorch's OpenMP threads spin ~10 ms after a call and would take
# a core from the next session timed in the same rotation (checks.latency)
CPU_SETTLE_S = 0.05

DTYPES = {"none": torch.float32, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class TorchSession:
    def __init__(self, module: torch.nn.Module, input_names: list[str], name: str = "torch",
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        """device: where the module lives (inputs go there, outputs come back to the CPU as float32); default the
        CPU. dtype: float inputs are cast to it (the module is expected to be in it already; `cast` makes one)."""
        self.name = name
        self.module = module.eval()
        self._inputs = input_names
        self._device = torch.device(device or "cpu")
        self._dtype = dtype
        self.settle_s = CPU_SETTLE_S if self._device.type == "cpu" else 0.0

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Host arrays in, host float32 out: on CUDA the time includes both copies (what a caller holding numpy
        arrays waits for); copying the output back synchronises the device."""
        args = []
        for k in self._inputs:
            x = torch.from_numpy(np.ascontiguousarray(feeds[k])).to(self._device, non_blocking=True)
            args.append(x.to(self._dtype) if self._dtype is not None and x.is_floating_point() else x)
        with torch.inference_mode():
            out = self.module(*args)
        return out.float().cpu().numpy()


def cast(module: torch.nn.Module, input_names: list[str], device: str, precision: str, name: str) -> TorchSession:
    """A session of a copy of `module` on `device` in `precision` ('none'/'fp32', 'fp16', 'bf16'): every
    parameter and buffer cast, as a deployment would; the caller's module is left as it is."""
    dtype = DTYPES[precision]
    m = copy.deepcopy(module).to(device=device, dtype=dtype)
    return TorchSession(m, input_names, name, device=device, dtype=None if dtype == torch.float32 else dtype)


def cuda_info() -> dict | None:
    """The GPU PyTorch sees (name, compute capability, CUDA version, the float32 math settings), or None."""
    if not torch.cuda.is_available():
        return None
    i = torch.cuda.current_device()
    p = torch.cuda.get_device_properties(i)
    return {"name": p.name, "compute_capability": f"{p.major}.{p.minor}", "memory_gb": round(p.total_memory / 2**30, 1),
            "multiprocessors": p.multi_processor_count, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(), "torch": torch.__version__,
            "tf32": {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}}


def precision_of(artifact, tower: str) -> str:
    """'fp32', 'fp16' or 'bf16': what `tower` runs in under this artifact (towers it does not own stay fp32)."""
    return artifact.variant.quantize if artifact.owns(tower) else "fp32"


class TorchRuntime(Runtime):
    """The PyTorch model itself, every parameter and buffer cast to the variant's precision, on the CPU or a
    CUDA device (no ONNX: export/torch_cast.py saves the cast weights as the artifact's file)."""

    runs = "torch"
    quantize = ("none", "fp16", "bf16")
    probe = False  # it runs the module the teacher already ran in this process

    def __init__(self, name: str, where: str):
        self.name, self.where = name, where
        self.on_cpu = where == "cpu"

    def refuses(self, variant) -> str | None:
        if variant.quantize not in self.quantize:
            return (f"runtime {self.name} runs the PyTorch model cast to a precision: quantize none, fp16 or bf16 "
                    f"(int8 is for the ONNX runtimes), not {variant.quantize}")
        if self.on_cpu and variant.quantize == "bf16" and not bf16_here():
            return (f"runtime {self.name} runs quantize bf16 on CPUs with AVX-512 BF16 or AMX, and this one has "
                    f"neither (mmcompress list shows its instruction sets): PyTorch would emulate bf16, slower than "
                    f"fp32; use quantize none or an int8 variant on onnxruntime here, or torch-cuda for a GPU target")
        return None

    def unavailable(self) -> str | None:
        if self.on_cpu or torch.cuda.is_available():
            return None
        return (f"runtime {self.name} needs a CUDA device and this PyTorch {torch.__version__} sees none "
                f"({'a CPU-only build' if torch.version.cuda is None else 'no GPU visible'}); run the recipe on a GPU "
                f"machine with a CUDA build of PyTorch, or use runtime torch-cpu / onnxruntime")

    def device(self) -> dict:
        if self.on_cpu:
            return {"runtime": self.name, "device": "cpu", "torch": torch.__version__}
        info = cuda_info() or {}
        return {"runtime": self.name, "device": info.get("name", "cuda"), **info}

    def session(self, artifact, tower: str, threads: int, name: str | None = None) -> TorchSession:
        bundle = artifact.bundle
        return cast(bundle.towers[tower], list(bundle.specs[tower].inputs), self.where, precision_of(artifact, tower),
                    name or f"{artifact.name}-{tower}")


def bf16_here() -> bool:  # where the CPU computes bf16 itself (tests stand in here)
    from mmcompress.machine import cpu_bf16

    return cpu_bf16()


register(TorchRuntime("torch-cpu", "cpu"))
register(TorchRuntime("torch-cuda", "cuda"))
