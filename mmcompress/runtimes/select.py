"""The session that runs one tower of one artifact, by the variant's `runtime` (recipe `export.variants[].runtime`):
ONNX Runtime on its CPU, CUDA or TensorRT provider, or PyTorch eager on the CPU or a CUDA device. Checks, latency
and bench open sessions here, so every runtime is measured the same way."""
from __future__ import annotations

from mmcompress.runtimes.base import Session


def is_torch(runtime: str) -> bool:
    return runtime.startswith("torch")


def unavailable(runtime: str) -> str | None:
    """Why `runtime` cannot run on this machine, or None."""
    if runtime == "torch-cuda":
        import torch

        if not torch.cuda.is_available():
            return (f"runtime torch-cuda needs a CUDA device and this PyTorch {torch.__version__} sees none "
                    f"({'a CPU-only build' if torch.version.cuda is None else 'no GPU visible'}); run the recipe "
                    f"on a GPU machine with a CUDA build of PyTorch, or use runtime torch-cpu / onnxruntime")
        return None
    if runtime.startswith("onnxruntime-"):
        from mmcompress.runtimes.onnxruntime import missing_provider

        return missing_provider(runtime)
    if runtime == "tensorrt":
        import importlib.util

        import torch

        if importlib.util.find_spec("tensorrt") is None:
            return ("runtime tensorrt builds and runs TensorRT engines here and needs TensorRT's Python bindings (pip "
                    "install tensorrt, or JetPack's python3-libnvinfer); for a board, use export.jetson instead")
        if not torch.cuda.is_available():
            return "runtime tensorrt needs a CUDA device (and a CUDA build of PyTorch for its buffers); none is visible"
    return None


def device_of(runtime: str) -> dict:
    """What a runtime's figures were measured on: {'runtime', 'device', ...versions}."""
    if runtime == "torch-cuda":
        from mmcompress.runtimes.torch import cuda_info

        info = cuda_info() or {}
        return {"runtime": runtime, "device": info.get("name", "cuda"), **info}
    if is_torch(runtime):
        import torch

        return {"runtime": runtime, "device": "cpu", "torch": torch.__version__}
    if runtime == "tensorrt":
        import tensorrt as trt

        from mmcompress.runtimes.torch import cuda_info

        info = cuda_info() or {}
        return {"runtime": runtime, "device": info.get("name", "cuda"), "tensorrt": trt.__version__, **info}
    import onnxruntime as ort

    from mmcompress.runtimes.onnxruntime import PROVIDERS

    return {"runtime": runtime, "device": "cpu" if runtime == "onnxruntime" else "cuda",
            "provider": PROVIDERS[runtime][0], "onnxruntime": ort.__version__}


def session(artifact: dict, tower: str, threads: int, name: str | None = None) -> Session:
    """artifact: the pipeline's entry ({'variant', 'towers', and 'bundle' (the model) for torch runtimes})."""
    v = artifact["variant"]
    runtime = getattr(v, "runtime", "onnxruntime")
    if is_torch(runtime):
        from mmcompress.export.torch_cast import precision_of
        from mmcompress.runtimes.torch import cast

        bundle = artifact["bundle"]
        return cast(bundle.towers[tower], list(bundle.specs[tower].inputs), "cuda" if runtime == "torch-cuda" else "cpu",
                    precision_of(v, tower), name or f"{v.name}-{tower}")
    if runtime == "tensorrt":
        from mmcompress.runtimes.tensorrt import TrtSession

        return TrtSession(artifact["towers"][tower], name, rebuild="mmcompress run (the engine stage rebuilds it)")
    from mmcompress.runtimes.onnxruntime import OrtSession

    as_written = runtime == "onnxruntime" and v.quantize == "static" and getattr(v, "target", "cpu") == "tensorrt"
    return OrtSession(artifact["towers"][tower], threads, name, runtime=runtime, as_written=as_written)


def _open_and_run(artifact: dict, feeds: dict, threads: int) -> dict:
    """Opens every tower's session and runs it once (in contain's child process) -> {tower: output shape}."""
    return {t: list(session(artifact, t, threads).run(f).shape) for t, f in feeds.items()}


def probe(artifact: dict, feeds: dict, threads: int) -> None:
    """Open and run an artifact's graphs once in a child process (runtimes.contain) before this process trusts
    them: a runtime that segfaults on a graph raises RuntimeCrash naming the variant, the signal and the runtime.
    feeds: tower -> a few eval rows. PyTorch runtimes run the module the teacher already ran here: not probed."""
    from pathlib import Path

    from mmcompress.runtimes.contain import contained

    v = artifact["variant"]
    if is_torch(v.runtime):
        return
    slim = {"variant": v, "towers": {t: artifact["towers"][t] for t in feeds}}  # paths only: cheap to send
    files = ", ".join(Path(p).name for p in slim["towers"].values())
    contained(_open_and_run, slim, feeds, threads, what=f"variant {v.name} (opening and running {files})",
              runtime=v.runtime)
