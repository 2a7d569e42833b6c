"""TensorRT engines behind the Session interface: inputs and outputs in CUDA buffers allocated through PyTorch,
the engine run with `execute_async_v3` on PyTorch's current stream (TensorRT >= 8.5: the named-tensor API).

An engine runs only where it was built (TensorRT version, GPU model, OS): the session reads the engine's manifest
(`<engine>.json`, runtimes.tensorrt_adapter.engine_manifest) and refuses a mismatch, naming how to rebuild, before
TensorRT would fail with "Version tag does not match" or worse.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mmcompress.runtimes import register
from mmcompress.runtimes.base import Runtime
from mmcompress.runtimes.tensorrt_adapter import check_manifest, here, read_manifest


class TrtSession:
    def __init__(self, engine: Path, name: str | None = None, rebuild: str = "the bundle's build.sh"):
        import tensorrt as trt
        import torch

        self.path = Path(engine)
        self.name = name or self.path.stem
        self.manifest = read_manifest(self.path)
        check_manifest(self.manifest, here(), str(self.path), rebuild)
        self._torch = torch
        logger = trt.Logger(trt.Logger.WARNING)
        self._engine = trt.Runtime(logger).deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise RuntimeError(f"{self.path}: TensorRT {trt.__version__} could not load the engine; rebuild it with "
                               f"{rebuild}")
        self._ctx = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self._inputs = [n for n in names if self._engine.get_tensor_mode(n) == mode]
        self._outputs = [n for n in names if self._engine.get_tensor_mode(n) != mode]
        self._dtypes = {n: _torch_dtype(trt, torch, self._engine.get_tensor_dtype(n)) for n in names}
        self.settle_s = 0.0

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        torch = self._torch
        held = []
        for n in self._inputs:
            t = torch.from_numpy(np.ascontiguousarray(feeds[n])).to("cuda", self._dtypes[n])
            held.append(t)
            self._ctx.set_input_shape(n, tuple(t.shape))
            self._ctx.set_tensor_address(n, t.data_ptr())
        outs = {}
        for n in self._outputs:
            outs[n] = torch.empty(tuple(self._ctx.get_tensor_shape(n)), dtype=self._dtypes[n], device="cuda")
            self._ctx.set_tensor_address(n, outs[n].data_ptr())
        stream = torch.cuda.current_stream()
        if not self._ctx.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"{self.path}: TensorRT execution failed")
        return outs[self._outputs[0]].float().cpu().numpy()  # the copy back synchronises the stream


def _torch_dtype(trt, torch, dt):
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32, trt.int8: torch.int8,
             trt.bool: torch.bool}
    if hasattr(trt, "int64"):
        table[trt.int64] = torch.int64
    if hasattr(trt, "bfloat16"):
        table[trt.bfloat16] = torch.bfloat16
    return table[dt]


class TensorRTRuntime(Runtime):
    """TensorRT engines built here from the variant's graphs (prepare: one per tower, manifest and timing cache
    under engines/<name>/, in a child process: TensorRT's builder can crash) and run through TrtSession."""

    name = "tensorrt"
    quantize = ("none", "static", "fp16")
    on_cpu = False
    engines = True

    def refuses(self, variant) -> str | None:
        from mmcompress.recipe import tensorrt_unbuildable

        why = tensorrt_unbuildable(variant)
        return f"runtime tensorrt builds engines from the graphs, and {why}" if why else None

    def unavailable(self) -> str | None:
        import importlib.util

        import torch

        if importlib.util.find_spec("tensorrt") is None:
            return ("runtime tensorrt builds and runs TensorRT engines here and needs TensorRT's Python bindings (pip "
                    "install tensorrt, or JetPack's python3-libnvinfer); for a board, use export.jetson instead")
        if not torch.cuda.is_available():
            return "runtime tensorrt needs a CUDA device (and a CUDA build of PyTorch for its buffers); none is visible"
        return None

    def device(self) -> dict:
        import tensorrt as trt

        from mmcompress.runtimes.torch import cuda_info

        info = cuda_info() or {}
        return {"runtime": self.name, "device": info.get("name", "cuda"), "tensorrt": trt.__version__, **info}

    def prepare(self, artifact, ctx):
        from mmcompress.runtimes.contain import contained
        from mmcompress.runtimes.tensorrt_adapter import build_engines, precision_of, profile_ranges

        ranges = profile_ranges(ctx.recipe, ctx.bundle, ctx.inputs)
        precisions = {t: precision_of(artifact, t) for t in artifact.graphs}
        folder = ctx.run.run_dir / "engines" / artifact.name
        m = ctx.run.stage(f"engine {artifact.name}", folder,
                          {"config": {"precision": precisions, "profile": ranges, "device": self.device()},
                           "parents": {"graphs": artifact.sha256}},
                          lambda d: contained(build_engines, precisions, dict(artifact.graphs), ranges, d,
                                              what=f"engine build of {artifact.name}", runtime=self.name))
        towers = {t: folder / f"{t}.engine" for t in artifact.graphs}
        return artifact.replace(towers=towers, sha256={t: m["files"][p.name]["sha256"] for t, p in towers.items()})

    def session(self, artifact, tower: str, threads: int, name: str | None = None) -> TrtSession:
        return TrtSession(artifact.towers[tower], name, rebuild="mmcompress run (the engine stage rebuilds it)")


register(TensorRTRuntime())
