"""`runtime: auto` (with `quantize: auto`): the plan searches every runtime here that plans (ONNX Runtime on
this CPU; OpenVINO when installed), at each precision it offers (bf16 where the CPU runs it), and the variant
runs on the runtime whose plans were fastest over its towers (export/planner.py). The artifact names the
runtime chosen; this entry never opens a session itself."""
from __future__ import annotations

from mmcompress.runtimes import get, names, register
from mmcompress.runtimes.base import Runtime


class AutoRuntime(Runtime):
    name = "auto"
    quantize = ("auto",)
    resolved_by_plan = True

    def refuses(self, variant) -> str | None:
        if variant.quantize != "auto":
            return (f"runtime auto is chosen by a precision plan: it goes with quantize auto, not "
                    f"{variant.quantize}; name a runtime (onnxruntime, openvino, ...) for this variant")
        return None

    def plan_runtimes(self) -> list[Runtime]:
        out = []
        for n in names():
            r = get(n)
            if r is not self and r.plans and r.unavailable() is None:
                out.append(r)
        return out

    def device(self) -> dict:
        return {"runtime": self.name, "device": "cpu", "plans_on": [r.name for r in self.plan_runtimes()]}

    def session(self, artifact, tower: str, threads: int, name: str | None = None):
        raise RuntimeError(f"variant {artifact.name}: runtime auto is resolved by its plan before anything runs")


register(AutoRuntime())
