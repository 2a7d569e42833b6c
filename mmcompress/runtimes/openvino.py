"""`runtime: openvino`: the variant's ONNX graphs compiled by OpenVINO's CPU plugin (pip install
mmcompress[openvino]).

What is set, and why (measured in notes/measured-2026-12-01.md, AMX kind): OpenVINO runs float graphs in bf16
on CPUs with AMX or AVX-512 BF16 unless told otherwise, so every session sets the inference precision itself:
f32 for fp32/fp16/int8 graphs (Q/DQ int8 graphs still run their quantized ops in int8), bf16 only for
`quantize: bf16` variants, which are refused on CPUs without AVX-512 BF16 or AMX. Threads are the checks'
thread count, one stream, the latency hint, and no core pinning (sessions share the cores with the teacher in
interleaved rounds). Each session records the precision OpenVINO reports it compiled for.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mmcompress.runtimes import register
from mmcompress.runtimes.base import Runtime


def bf16_here() -> bool:  # OpenVINO's CPU plugin runs bf16 natively where the CPU does (tests stand in here)
    from mmcompress.machine import cpu_bf16

    return cpu_bf16()


class OpenVinoSession:
    def __init__(self, path: Path, threads: int, precision: str, name: str | None = None):
        import openvino as ov

        self.path, self.name = Path(path), name or Path(path).stem
        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
                  "ENABLE_CPU_PINNING": False, "INFERENCE_PRECISION_HINT": precision}
        self._compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        self._request = self._compiled.create_infer_request()
        self._inputs = [(i, sorted(i.get_names())) for i in self._compiled.inputs]
        self._output = self._compiled.outputs[0]
        self.facts = {"inference_precision": self._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
                      "threads": int(self._compiled.get_property("INFERENCE_NUM_THREADS"))}
        self.settle_s = 0.0

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        args = {}
        for port, names in self._inputs:  # an fp16 graph's input carries its cast's name too
            key = next(n for n in names if n in feeds)
            args[port] = np.ascontiguousarray(feeds[key])
        return np.asarray(self._request.infer(args)[self._output], dtype=np.float32)


class OpenVinoRuntime(Runtime):
    """ONNX graphs on OpenVINO's CPU plugin; `quantize: bf16` runs the fp32 graphs at bf16 precision; a
    `quantize: auto` plan may choose bf16 per tower (Artifact.precision)."""

    name = "openvino"
    quantize = ("none", "dynamic", "static", "fp16", "bf16", "auto")
    plans = True

    def refuses(self, variant) -> str | None:
        if variant.quantize == "bf16" and not bf16_here():
            return ("runtime openvino runs quantize bf16 on CPUs with AVX-512 BF16 or AMX, and this one has neither "
                    "(mmcompress list shows its instruction sets); use quantize none or an int8 variant here")
        if getattr(variant, "target", "cpu") == "tensorrt":
            return "runtime openvino runs CPU graphs; target: tensorrt graphs are for TensorRT"
        return super().refuses(variant)

    def unavailable(self) -> str | None:
        try:
            import openvino  # noqa: F401
        except ImportError:
            return ("runtime openvino needs OpenVINO: pip install 'mmcompress[openvino]' (or pip install openvino)")
        return None

    def device(self) -> dict:
        import openvino as ov

        from mmcompress.machine import cpu_model

        return {"runtime": self.name, "device": "cpu", "openvino": ov.get_version(), "cpu": cpu_model()}

    @staticmethod
    def precision(artifact, tower: str) -> str:
        """OpenVINO's name for the arithmetic the artifact asks for this tower: bf16 (quantize: bf16, or a plan
        that chose it), else f32."""
        return "bf16" if artifact.precision.get(tower) == "bf16" else "f32"

    def precisions(self) -> tuple[str, ...]:
        return ("fp32", "bf16") if bf16_here() else ("fp32",)

    def open(self, path, threads: int, precision: str = "fp32", name: str | None = None) -> OpenVinoSession:
        return OpenVinoSession(path, threads, "bf16" if precision == "bf16" else "f32", name)

    def session(self, artifact, tower: str, threads: int, name: str | None = None) -> OpenVinoSession:
        return self.open(artifact.towers[tower], threads, self.precision(artifact, tower), name)

    def key(self, artifact, tower: str) -> str:  # one graph at f32 and at bf16: two sessions, two rows
        return f"{self.name}:{self.precision(artifact, tower)}:{artifact.towers[tower]}"

    def timing_id(self, artifact, tower: str) -> tuple:
        return (self.name, artifact.sha256.get(tower), self.precision(artifact, tower))


register(OpenVinoRuntime())
