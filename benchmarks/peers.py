"""Peers, side by side: what a user could run instead of mmcompress, and mmcompress's own artifacts, in ONE
process, on the same eval rows, timed in the same interleaved rounds.

    .venv/bin/python benchmarks/peers.py --model vit-b32 [--compile] [--batch-sizes 1 16] [--rounds 20]
    .venv/bin/python benchmarks/peers.py --model bert-outliers [--compile]
    .venv/bin/python benchmarks/peers.py --small --model vit-b32 --out /tmp/peers.json   # smoke test (seconds)

The peers (OpenVINO, NNCF, torchao) are the `peers` extra: pip install 'mmcompress[peers]' (openvino, nncf,
torchao). Any of them missing gives its rows a "why not run" note instead of figures; nothing else changes.

Models (random init or trained here; nothing is downloaded):
- `vit-b32`: a CLIP whose image tower is ViT-B/32-shaped (224 px, patch 32, hidden 768, 12 layers, 12 heads,
  MLP 3072, projection 512; the tower benchmarks/vit_b32_tower.py times) beside examples.tiny_clip's text
  tower; only the image tower is compared. Eval and calibration rows: procedural shape images at 224 px,
  CLIP-normalised.
- `bert-outliers`: a BERT (hidden 384, 6 layers, 12 heads, MLP 1536, initializer_range 0.1) trained briefly on
  examples.texts_jsonl texts (examples.train_text_encoder) with activation outliers added to two layers
  (examples.add_attention_outliers), mean-pooled and normalised as mmcompress loads it; the rows of
  benchmarks/planner_outliers.py.
`--small` makes either one tiny (2 layers, narrow), with few rows and rounds: for smoke tests, not figures.

Rows (the reference is PyTorch fp32 eager, the teacher as mmcompress loads it from the model directory):
- PyTorch fp32 eager; PyTorch bf16 autocast (only where the CPU computes bf16: machine.cpu_bf16());
- ORT fp32 and ORT dynamic int8 of a plain `torch.onnx.export` of the same module (TorchScript exporter, the
  whole model as written: Optimum's CLI kind, ONNX Runtime's quantize_dynamic defaults);
- OpenVINO running that plain fp32 graph at f32 and at bf16 (bf16 only where cpu_bf16);
- OpenVINO + NNCF PTQ int8 (nncf.quantize of the OpenVINO model, model_type TRANSFORMER, the calibration rows);
- torchao int8 dynamic activation (per token) + int8 weight (per channel), eager, and with --compile also
  torch.compile with inductor freezing (minutes for the full-size models);
- mmcompress's artifacts, made by `mmcompress.run` on a recipe for the same model directory: int8-dynamic,
  int8-static (on the runtime the report names, and the same static Q/DQ graph on OpenVINO at f32), and with
  --planned (default where the recipe schema accepts it) `{name: planned, quantize: auto, runtime: auto}`, run
  on the runtime its report and plan.json record. Where `runtime: auto` is refused by the installed
  mmcompress, the planned variant falls back to `quantize: auto` on ONNX Runtime, and the output says so.

Every row: median ms with its 95% bootstrap interval at each batch size, the speedup over PyTorch fp32 from
the same paired rounds (with its interval), min and mean cosine to PyTorch fp32 over the eval rows, what ran it
(runtime, version, precision), and a `why_not` note where it did not run. Prints a Markdown table; writes JSON
with machine.fingerprint() (CPU, instruction sets, int8 kind, threads, versions) to --out (default
benchmarks/results/peers-<model>-<cpu>-<int8 kind>.json; with --small, benchmarks/out/).
"""
from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import tempfile
import time
import traceback
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = "pytorch-fp32"


# --------------------------------------------------------------------------------------------------- models

def build_vit(work: Path, small: bool) -> dict:
    import torch
    from transformers import CLIPConfig, CLIPModel

    from mmcompress import examples

    model_dir = examples.tiny_clip(work / "clip-vit-b32")  # its tokenizer and text tower; the image tower:
    tiny = CLIPModel.from_pretrained(model_dir)
    vision = (dict(image_size=224, patch_size=32, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                   num_attention_heads=2) if small else
              dict(image_size=224, patch_size=32, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                   num_attention_heads=12))
    torch.manual_seed(0)
    big = CLIPModel(CLIPConfig(text_config=tiny.config.text_config.to_dict(), projection_dim=64 if small else 512,
                               vision_config=vision))
    big.save_pretrained(model_dir)
    examples._image_processor(model_dir, 224, True, (0.48145466, 0.4578275, 0.40821073),
                              (0.26862954, 0.26130258, 0.27577711))
    data = examples.shapes_jsonl(work / "shapes", n=48 if small else 160)
    return {"tower": "image", "model_dir": model_dir, "data": data, "budget_min_cosine": 0.999,
            "prompts": "a {label}", "config": {"vision": vision, "params": sum(p.numel() for p in big.vision_model.parameters())
                                               + big.visual_projection.weight.numel()}}


def build_bert(work: Path, small: bool) -> dict:
    import torch
    from transformers import BertConfig, BertModel

    from mmcompress import examples

    hidden, layers, steps, scale = (64, 2, 20, 64.0) if small else (384, 6, 300, 64.0)
    model_dir = work / "bert-outliers"
    tok = examples._bert_tokenizer(model_dir)
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=4 * hidden,
                                 num_hidden_layers=layers, num_attention_heads=max(1, hidden // 32),
                                 max_position_embeddings=64, initializer_range=0.1))
    data = examples.texts_jsonl(work / "texts", n=120 if small else 400)
    t0 = time.perf_counter()
    loss = examples.train_text_encoder(model, tok, data, steps=steps)
    train_s = time.perf_counter() - t0
    modules = examples.add_attention_outliers(model, channels=2, scale=scale, layers=[0, layers // 2])
    model.save_pretrained(model_dir)
    return {"tower": "text", "model_dir": model_dir, "data": data, "budget_min_cosine": 0.99,
            "prompts": "question about {label}",
            "config": {"hidden": hidden, "layers": layers, "train_steps": steps, "train_loss": loss,
                       "train_s": round(train_s, 1), "outlier_scale": scale, "outlier_modules": modules,
                       "params": sum(p.numel() for p in model.parameters())}}


MODELS = {"vit-b32": build_vit, "bert-outliers": build_bert}


def rows_of(model: dict, bundle, n: int, seed: int) -> dict[str, np.ndarray]:
    """n input rows for the compared tower, preprocessed as mmcompress's teacher preprocesses them."""
    if model["tower"] == "image":
        from mmcompress.data import shapes

        return {"pixel_values": np.ascontiguousarray(bundle.image_preprocess(shapes.generate(n, seed=seed).images),
                                                     dtype=np.float32)}
    lines = [json.loads(s) for s in Path(model["data"]).read_text().splitlines() if s.strip()]
    rng = np.random.default_rng(seed)
    texts = [lines[i]["text" if j % 2 == 0 else "pair"] for j, i in enumerate(rng.integers(0, len(lines), n))]
    return bundle.text_preprocess(texts)  # padded to the longest of these rows: one width for every session


def recipe_yaml(model: dict, name: str, args, planned_runtime: str | None) -> str:
    tower = model["tower"]
    variants = ["    - {name: int8-dynamic, quantize: dynamic}",
                "    - {name: int8-static, quantize: static}"]
    if planned_runtime is not None:
        rt = f", runtime: {planned_runtime}" if planned_runtime != "onnxruntime" else ""
        variants.append(f"    - {{name: planned, quantize: auto{rt}, max_seconds: {args.planner_seconds}}}")
    teacher_towers = "\n  towers: [image]" if tower == "image" else ""
    template = model["prompts"]
    prompts = f'\n  prompts: {{templates: ["{template}"]}}' if tower == "text" else ""
    splits = "{calibration: 16, eval: 24}" if args.small else "{calibration: 64, eval: 96}"
    return f"""name: {name}
teacher:
  hf: {model['model_dir']}{teacher_towers}
data:
  source: jsonl
  path: {model['data']}
  splits: {splits}{prompts}
export:
  variants:
{chr(10).join(variants)}
checks:
  batch_sizes: [{', '.join(map(str, args.batch_sizes))}]
  rounds: 5
  warmup: 1
  threads: {args.threads}
  budgets: {{min_cosine: {model['budget_min_cosine']}}}
"""


def choose_recipe(model: dict, work: Path, args) -> tuple[Path, str | None, list[str]]:
    """Write the recipe; the planned variant with runtime: auto if the installed schema accepts it, else
    quantize: auto on ONNX Runtime (a printed note), else none. -> (path, planned runtime or None, notes)."""
    import mmcompress

    notes = []
    path = work / "recipe.yaml"
    tries = (["auto", "onnxruntime"] if args.planned is not False else [None])
    for rt in tries:
        path.write_text(recipe_yaml(model, f"peers-{args.model}", args, rt))
        try:
            mmcompress.load_recipe(path)
            return path, rt, notes
        except mmcompress.RecipeError as e:
            if rt is None:
                raise
            first = str(e).strip().splitlines()[0]
            if rt == "auto":
                notes.append(f"runtime: auto refused by this mmcompress ({first}); planned variant falls back "
                             f"to quantize: auto on onnxruntime")
                if args.planned is True:
                    notes.append("--planned was asked for; the ONNX Runtime plan is what this mmcompress can make")
            else:
                notes.append(f"quantize: auto refused too ({first}); no planned variant")
    path.write_text(recipe_yaml(model, f"peers-{args.model}", args, None))
    mmcompress.load_recipe(path)
    return path, None, notes


# ------------------------------------------------------------------------------------------------- sessions

def pkg_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


class AutocastSession:
    """PyTorch eager under torch.autocast('cpu', bfloat16): what a user adds in one line."""

    def __init__(self, module, input_names: list[str], name: str):
        from mmcompress.runtimes.torch import CPU_SETTLE_S

        self.module, self._inputs, self.name, self.settle_s = module.eval(), input_names, name, CPU_SETTLE_S

    def run(self, feeds):
        import torch

        args = [torch.from_numpy(np.ascontiguousarray(feeds[k])) for k in self._inputs]
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            out = self.module(*args)
        return out.float().numpy()


def plain_export(module, feeds: dict[str, np.ndarray], path: Path) -> str:
    """torch.onnx.export of the module as it is, no mmcompress graph form: the TorchScript exporter (what
    Optimum's CLI runs), the dynamo exporter where that fails. -> which exporter wrote it."""
    import torch

    names = list(feeds)
    args = tuple(torch.from_numpy(feeds[k][:2]) for k in names)
    axes = {k: ({0: "batch", 1: "sequence"} if feeds[k].ndim == 2 else {0: "batch"}) for k in names}
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, str(path), input_names=names, output_names=["embeddings"],
                              dynamic_axes={**axes, "embeddings": {0: "batch"}}, opset_version=17, dynamo=False)
        return "torchscript"
    except Exception as e:  # noqa: BLE001 - the dynamo exporter is the other plain export
        print(f"  TorchScript export failed ({type(e).__name__}: {str(e)[:120]}); dynamo exporter")
        dims = {k: {i: torch.export.Dim.AUTO for i in a} for k, a in axes.items()}
        torch.onnx.export(module, args, str(path), input_names=names, output_names=["embeddings"],
                          dynamic_shapes=dims, opset_version=18, dynamo=True)
        return "dynamo"


def run_rows(session, feeds: dict[str, np.ndarray], batch: int = 16) -> np.ndarray:
    n = len(next(iter(feeds.values())))
    return np.concatenate([np.asarray(session.run({k: v[i:i + batch] for k, v in feeds.items()}), np.float32)
                           for i in range(0, n, batch)])


def cosines(out: np.ndarray, ref: np.ndarray) -> np.ndarray:
    a = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    b = ref / np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), 1e-12)
    return (a * b).sum(1)


def ver(pkg: str) -> str:
    """'openvino 2026.4.1', or 'openvino (not installed)'."""
    return f"{pkg} {pkg_version(pkg) or '(not installed)'}"


def why_missing(*pkgs: str) -> str | None:
    missing = [p for p in pkgs if pkg_version(p) is None]
    if not missing:
        return None
    return f"{', '.join(missing)} not installed: pip install 'mmcompress[peers]'"


# -------------------------------------------------------------------------------------------------- peers

def build_peers(model: dict, bundle, calib: dict, ev: dict, work: Path, args) -> tuple[dict, list[dict]]:
    """-> (sessions by row name, row dicts in table order). A row without a session has `why_not`."""
    import torch

    from mmcompress.machine import cpu_bf16
    from mmcompress.runtimes.onnxruntime import OrtSession
    from mmcompress.runtimes.torch import TorchSession

    tower = model["tower"]
    module = bundle.towers[tower].eval()
    inputs = list(bundle.specs[tower].inputs)
    sessions, rows = {}, []
    torch_v = torch.__version__

    def add(name, label, runtime, precision, make, why_not=None):
        row = {"name": name, "label": label, "runtime": runtime, "precision": precision, "why_not": why_not}
        rows.append(row)
        if why_not is not None:
            print(f"  {name}: not run ({why_not})")
            return
        t0 = time.perf_counter()
        try:
            s = make()
        except Exception as e:  # noqa: BLE001 - a peer that fails here is a row saying so, not a crash
            row["why_not"] = f"failed here: {type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"
            print(f"  {name}: {row['why_not']}")
            traceback.print_exc(limit=2)
            return
        row["build_s"] = round(time.perf_counter() - t0, 2)
        sessions[name] = s
        print(f"  {name}: ready ({row['build_s']} s)")

    no_bf16 = None if cpu_bf16() else ("this CPU has neither AVX-512 BF16 nor AMX (machine.cpu_bf16() is false): "
                                       "bf16 is emulated here and says nothing")
    add(REFERENCE, "PyTorch eager fp32 (the teacher as loaded)", f"torch {torch_v}", "fp32",
        lambda: TorchSession(module, inputs, REFERENCE))
    add("pytorch-bf16-autocast", "PyTorch eager bf16 autocast", f"torch {torch_v}", "bf16 (autocast)",
        lambda: AutocastSession(module, inputs, "pytorch-bf16-autocast"), no_bf16)

    plain, exporter = work / "plain-fp32.onnx", {}

    def export():
        exporter["name"] = plain_export(module, calib, plain)
        return OrtSession(plain, args.threads, "ort-fp32")
    add("ort-fp32", "ORT fp32, plain torch.onnx.export", ver("onnxruntime"), "fp32", export)
    plain_ok = plain.is_file()
    no_plain = None if plain_ok else "the plain export failed (row ort-fp32)"

    def ort_dynamic():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(plain), str(work / "plain-int8-dynamic.onnx"), weight_type=QuantType.QInt8)
        return OrtSession(work / "plain-int8-dynamic.onnx", args.threads, "ort-int8-dynamic-plain")
    add("ort-int8-dynamic-plain", "ORT dynamic int8 of the plain export (quantize_dynamic defaults; Optimum's kind)",
        ver("onnxruntime"), "int8 dynamic (per-tensor activations, QInt8 weights)", ort_dynamic, no_plain)

    no_ov = why_missing("openvino") or no_plain
    if no_ov is None:
        from mmcompress.runtimes.openvino import OpenVinoSession
    add("openvino-fp32-f32", "OpenVINO, plain fp32 graph at f32", ver("openvino"), "f32",
        lambda: OpenVinoSession(plain, args.threads, "f32", "openvino-fp32-f32"), no_ov)
    add("openvino-fp32-bf16", "OpenVINO, plain fp32 graph at bf16", ver("openvino"), "bf16",
        lambda: OpenVinoSession(plain, args.threads, "bf16", "openvino-fp32-bf16"), no_ov or no_bf16)

    def nncf_int8():
        import nncf
        import openvino as ov

        core = ov.Core()
        ov_model = core.read_model(str(plain))
        n = len(next(iter(calib.values())))
        items = [{k: v[i:i + 1] for k, v in calib.items()} for i in range(n)]
        q = nncf.quantize(ov_model, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER, subset_size=n)
        ov.save_model(q, str(work / "nncf-int8.xml"))
        return OpenVinoSession(work / "nncf-int8.xml", args.threads, "f32", "openvino-nncf-int8")
    n_cal = len(next(iter(calib.values())))
    add("openvino-nncf-int8", f"OpenVINO + NNCF PTQ int8 (transformer preset, {n_cal} calibration rows)",
        f"{ver('openvino')}, {ver('nncf')}", "int8 (f32 elsewhere)", nncf_int8,
        why_missing("openvino", "nncf") or no_plain)

    no_ao = why_missing("torchao")

    def torchao_module():
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

        m = copy.deepcopy(module).eval()
        quantize_(m, Int8DynamicActivationInt8WeightConfig())
        return m
    add("torchao-int8-eager", "torchao int8 dynamic activation (per token) + int8 weight, eager",
        f"torch {torch_v}, {ver('torchao')}", "int8 dynamic",
        lambda: TorchSession(torchao_module(), inputs, "torchao-int8-eager"), no_ao)

    def torchao_compiled():
        import torch._inductor.config as inductor

        inductor.freezing = True
        m = torch.compile(torchao_module())
        s = TorchSession(m, inputs, "torchao-int8-compile")
        t0 = time.perf_counter()
        for b in sorted(set(args.batch_sizes)):  # compile for every shape timed, outside the rounds
            s.run({k: np.ascontiguousarray(np.concatenate([v] * (-(-b // len(v))))[:b]) for k, v in ev.items()})
        rows[-1]["compile_s"] = round(time.perf_counter() - t0, 1)
        return s
    add("torchao-int8-compile", "torchao int8 dynamic + torch.compile (inductor, freezing)",
        f"torch {torch_v}, {ver('torchao')}", "int8 dynamic", torchao_compiled,
        no_ao or (None if args.compile else "needs --compile (compiling takes minutes at full size)"))
    if exporter:
        next(r for r in rows if r["name"] == "ort-fp32")["exporter"] = exporter["name"]
    return sessions, rows


def mmcompress_rows(model: dict, work: Path, args, bundle) -> tuple[dict, list[dict], dict]:
    """Run the recipe through the public API; sessions for its artifacts on the runtimes the report names."""
    import mmcompress
    from mmcompress.runtimes.onnxruntime import OrtSession

    tower = model["tower"]
    mm_v = pkg_version("mmcompress")
    sessions, rows = {}, []
    info: dict = {}
    try:
        recipe, planned_rt, notes = choose_recipe(model, work, args)
    except Exception as e:  # noqa: BLE001
        why = f"the recipe was refused: {type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"
        return {}, [{"name": f"mmcompress-{n}", "label": f"mmcompress {n}", "runtime": None, "precision": None,
                     "why_not": why} for n in ("int8-dynamic", "int8-static")], {"error": why}
    for n in notes:
        print(f"  note: {n}")
    info.update(recipe=recipe.read_text(), planned_runtime_asked=planned_rt, notes=notes)
    t0 = time.perf_counter()
    try:
        report = mmcompress.run(recipe, run_dir=work / "run")
        info["exit_code"] = report.exit_code
        info["failures"] = report.failures
    except mmcompress.MMCompressError as e:
        report, why = None, f"mmcompress.run failed (exit {e.exit_code}): {str(e).strip().splitlines()[0][:300]}"
        info["error"] = why
    info["run_s"] = round(time.perf_counter() - t0, 1)
    names = ["int8-dynamic", "int8-static"] + (["planned"] if planned_rt is not None else [])
    for n in names:
        label = {"int8-dynamic": "mmcompress int8-dynamic", "int8-static": "mmcompress int8-static",
                 "planned": "mmcompress planned (quantize: auto, runtime as planned)"}[n]
        row = {"name": f"mmcompress-{n}", "label": label, "runtime": None, "precision": None, "why_not": None}
        rows.append(row)
        if report is None:
            row["why_not"] = info["error"]
            continue
        a = report.artifacts.get(n)
        if a is None or tower not in a.files:
            row["why_not"] = f"no artifact: {report.failed.get(n) or 'not in the report'}"
            continue
        runtime = a.runtime.get("runtime", "onnxruntime")
        towers_rt = (a.runtime.get("towers") or {}).get(tower) or {}
        precision = towers_rt.get("inference_precision") or a.kind.rsplit("-", 1)[-1]
        precision = f"int8 {precision}" if precision in ("dynamic", "static") else precision
        row.update(kind=a.kind, file=str(a.files[tower].relative_to(work / "run")),
                   report={"min_cosine": (a.fidelity.get(tower) or {}).get("min"), "verdict": a.verdict,
                           "speedup": {k: v.get("speedup") for k, v in (a.latency.get(tower) or {}).items()}})
        if n == "planned":
            plan_file = work / "run" / "variants" / "planned" / "plan.json"
            if plan_file.is_file():
                plan = json.loads(plan_file.read_text()).get(tower, {})
                chosen = plan.get("chosen") or {}
                # where the planner records the runtime and precision it chose (runtime: auto), they win over
                # the variant's; today's plan.json records the int8 method and the nodes kept float
                planned_rt = chosen.get("runtime") or plan.get("runtime")
                planned_prec = chosen.get("precision") or plan.get("precision")
                row["plan"] = {"reason": plan.get("reason"), "method": chosen.get("method"),
                               "label": chosen.get("label"), "float_nodes": len(chosen.get("float_nodes") or []),
                               "runtime": planned_rt, "precision": planned_prec,
                               "plans_tried": len(plan.get("plans") or [])}
                runtime = planned_rt or runtime
                precision = (f"auto -> {chosen.get('label') or chosen.get('method')}, "
                             f"{row['plan']['float_nodes']} node(s) float, {planned_prec or 'fp32'} elsewhere")
        try:
            if runtime == "onnxruntime":
                s = OrtSession(a.files[tower], args.threads, row["name"])
                row.update(runtime=f"onnxruntime {pkg_version('onnxruntime')} (via mmcompress {mm_v})",
                           precision=precision)
            elif runtime == "openvino":
                from mmcompress.runtimes.openvino import OpenVinoSession

                p = "bf16" if "bf16" in str(precision) else "f32"
                s = OpenVinoSession(a.files[tower], args.threads, p, row["name"])
                row.update(runtime=f"openvino {pkg_version('openvino')} (via mmcompress {mm_v})",
                           precision=f"{a.kind} at {s.facts['inference_precision']}")
            elif runtime == "torch-cpu":
                from mmcompress.runtimes.torch import cast

                s = cast(bundle.towers[tower], list(bundle.specs[tower].inputs), "cpu",
                         "bf16" if "bf16" in str(precision) else "none", row["name"])
                row.update(runtime=f"torch {pkg_version('torch')} (via mmcompress {mm_v})", precision=precision)
            else:
                row["why_not"] = f"runtime {runtime} is not timed on this CPU by this benchmark"
                continue
        except Exception as e:  # noqa: BLE001
            row["why_not"] = f"failed here: {type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"
            continue
        sessions[row["name"]] = s
        if n == "int8-static" and runtime == "onnxruntime":
            ov_row = {"name": "mmcompress-int8-static-on-openvino",
                      "label": "OpenVINO running mmcompress's int8-static Q/DQ graph", "runtime": None,
                      "precision": "int8 Q/DQ (f32 elsewhere)", "why_not": why_missing("openvino"),
                      "file": row["file"]}
            rows.append(ov_row)
            if ov_row["why_not"] is None:
                try:
                    from mmcompress.runtimes.openvino import OpenVinoSession

                    sessions[ov_row["name"]] = OpenVinoSession(a.files[tower], args.threads, "f32", ov_row["name"])
                    ov_row["runtime"] = f"openvino {pkg_version('openvino')}"
                except Exception as e:  # noqa: BLE001
                    ov_row["why_not"] = f"failed here: {type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"
    return sessions, rows, info


# ------------------------------------------------------------------------------------------------- output

def fmt_ms(v: float) -> str:
    return f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def table(rows: list[dict], batch_sizes: list[int], kind: str) -> str:
    head = ["variant", "runs on"]
    for b in batch_sizes:
        head += [f"b{b} ms [95% CI]", f"b{b} × PyTorch fp32 [95% CI]"]
    head += ["min cos", "mean cos"]
    lines = [f"CPU kind: {kind}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["label"], f"{r['runtime'] or ''} {r['precision'] or ''}".strip()
                 + (f" (compiled in {r['compile_s']:g} s)" if r.get("compile_s") else "")]
        if r.get("why_not"):
            cells += ["—"] * (2 * len(batch_sizes)) + ["—", f"not run: {r['why_not']}"]
        else:
            for b in batch_sizes:
                lat = r["latency"][str(b)]
                lo, hi = lat["median_ci95_ms"]
                cells.append(f"{fmt_ms(lat['median_ms'])} [{fmt_ms(lo)}, {fmt_ms(hi)}]")
                if r["name"] == REFERENCE:
                    cells.append("1")
                else:
                    slo, shi = lat["speedup_ci95"]
                    cells.append(f"{lat['speedup']:.2f} [{slo:.2f}, {shi:.2f}]")
            cells += [f"{r['cosine_min']:.5f}", f"{r['cosine_mean']:.5f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(rows: list[dict], all_times: dict[int, dict], min_cosine: float) -> dict:
    """Per batch: the fastest artifact mmcompress made (rows run through mmcompress.run) and the fastest peer,
    each among the rows whose min cosine to PyTorch fp32 meets `min_cosine` (the acceptance budget), and
    mmcompress's over the peer's from the same paired rounds (above 1: mmcompress's is faster); also over
    OpenVINO + NNCF int8 whatever its cosine."""
    from mmcompress.checks.latency import pair

    ok = [r for r in rows if r.get("latency") and r["name"] != REFERENCE and r["cosine_min"] >= min_cosine]
    ours = [r for r in ok if r["name"].startswith("mmcompress-") and "via mmcompress" in (r["runtime"] or "")]
    peers = [r for r in ok if r not in ours]
    out: dict = {"min_cosine": min_cosine, "batches": {}, "lines": [f"min cosine budget {min_cosine:g}:"]}
    for b, times in all_times.items():
        key = str(b)
        fastest = lambda rs: min(rs, key=lambda r: r["latency"][key]["median_ms"]) if rs else None  # noqa: E731
        mm, peer = fastest(ours), fastest(peers)
        got = {"mmcompress_best": mm and mm["name"], "peer_best": peer and peer["name"]}
        if mm:
            got["mmcompress_best_vs_pytorch"] = mm["latency"][key]["speedup"]
        if mm and peer:
            got["mmcompress_best_vs_peer_best"] = pair(times, mm["name"], peer["name"])
        if mm and "openvino-nncf-int8" in times:
            got["mmcompress_best_vs_openvino_nncf_int8"] = pair(times, mm["name"], "openvino-nncf-int8")
        if "mmcompress-planned" in times and peer:  # the artifact mmcompress chose by itself, whatever its cosine
            got["planned_vs_peer_best"] = pair(times, "mmcompress-planned", peer["name"])
        if "mmcompress-planned" in times and "openvino-nncf-int8" in times:
            got["planned_vs_openvino_nncf_int8"] = pair(times, "mmcompress-planned", "openvino-nncf-int8")
        out["batches"][key] = got
        line = f"  b{b}: mmcompress's fastest {got['mmcompress_best'] or '(none within the budget)'}"
        if mm:
            line += f" {mm['latency'][key]['speedup']:.2f}x PyTorch fp32"
        line += f"; fastest peer {got['peer_best'] or '(none within the budget)'}"
        for k, label in (("mmcompress_best_vs_peer_best", "vs that peer"),
                         ("mmcompress_best_vs_openvino_nncf_int8", "vs OpenVINO + NNCF int8"),
                         ("planned_vs_peer_best", "planned vs the fastest peer"),
                         ("planned_vs_openvino_nncf_int8", "planned vs OpenVINO + NNCF int8")):
            if k in got:
                lo, hi = got[k]["speedup_ci95"]
                line += f"; {label} {got[k]['speedup']:.2f}x [{lo:.2f}, {hi:.2f}]"
        out["lines"].append(line)
    return out


def cpu_tag(fp: dict) -> str:
    cpu = fp["cpu"].lower()
    vendor = next((v for v in ("xeon", "epyc", "core", "ryzen", "graviton") if v in cpu), None)
    vendor = vendor or (cpu.split()[0] if cpu.split() else fp["arch"])
    return f"{vendor}-{fp['int8_kind']}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=sorted(MODELS), required=True)
    ap.add_argument("--small", action="store_true", help="a tiny model, few rows and rounds: smoke test only")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds per batch size (20; --small 5)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed calls per session first (3; --small 1)")
    ap.add_argument("--eval", type=int, default=None, help="eval rows for the cosines (64; --small 8)")
    ap.add_argument("--calibration", type=int, default=None, help="NNCF calibration rows (64; --small 8)")
    ap.add_argument("--threads", type=int, default=None, help="default: the usable cores")
    ap.add_argument("--compile", action="store_true", help="also torchao + torch.compile (minutes)")
    ap.add_argument("--planned", dest="planned", action="store_true", default=None,
                    help="add {name: planned, quantize: auto, runtime: auto} (default: on where the schema takes it)")
    ap.add_argument("--no-planned", dest="planned", action="store_false")
    ap.add_argument("--planner-seconds", type=float, default=None, help="the planner's max_seconds (600; --small 20)")
    ap.add_argument("--no-mmcompress", action="store_true", help="peers only, no mmcompress.run")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--keep", type=Path, help="keep the work directory (models, graphs, run) here")
    args = ap.parse_args(argv)
    small = args.small
    args.rounds = args.rounds or (5 if small else 20)
    args.warmup = args.warmup if args.warmup is not None else (1 if small else 3)
    args.eval = args.eval or (8 if small else 64)
    args.calibration = args.calibration or (8 if small else 64)
    args.planner_seconds = args.planner_seconds or (20 if small else 600)

    from mmcompress.checks.latency import feeds_at, measure, set_threads, summarize
    from mmcompress.machine import cpu_bf16, fingerprint, usable_cores
    from mmcompress.models import load_teacher
    from mmcompress.recipe import TeacherConfig

    args.threads = args.threads or usable_cores()
    set_threads(args.threads)
    fp = {**fingerprint(), "threads": args.threads, "cpu_bf16": cpu_bf16(),
          "peer_versions": {p: pkg_version(p) for p in ("openvino", "nncf", "torchao")}}
    if args.out is None:
        args.out = ROOT / "benchmarks" / ("out" if small else "results") / \
            f"peers-{args.model}{'-small' if small else ''}-{cpu_tag(fp)}.json"
    print(f"peers benchmark: {args.model}{' (small)' if small else ''} on {fp['cpu']} ({fp['int8_kind']}), "
          f"{args.threads} threads")
    work = args.keep or Path(tempfile.mkdtemp(prefix="mmcompress-peers-"))
    work.mkdir(parents=True, exist_ok=True)
    steps: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        model = MODELS[args.model](work, small)
        steps["model_s"] = round(time.perf_counter() - t0, 1)
        tower = model["tower"]
        # the reference: the teacher exactly as mmcompress loads this directory (pooling, normalisation)
        bundle = load_teacher(TeacherConfig(hf=str(model["model_dir"]), towers=[tower] if tower == "image" else None),
                              work)
        calib, ev = rows_of(model, bundle, args.calibration, 1), rows_of(model, bundle, args.eval, 2)
        print("building peers")
        t0 = time.perf_counter()
        sessions, rows = build_peers(model, bundle, calib, ev, work, args)
        steps["peers_s"] = round(time.perf_counter() - t0, 1)
        mm_info = None
        if not args.no_mmcompress:
            print("mmcompress.run on the recipe")
            t0 = time.perf_counter()
            mm_sessions, mm_rows, mm_info = mmcompress_rows(model, work, args, bundle)
            steps["mmcompress_s"] = round(time.perf_counter() - t0, 1)
            sessions.update(mm_sessions)
            rows += mm_rows
        set_threads(args.threads)  # anything that changed PyTorch's thread count on the way (compile, a run)
        by_name = {r["name"]: r for r in rows}
        ref = run_rows(sessions[REFERENCE], ev)
        for name, s in sessions.items():
            c = cosines(run_rows(s, ev), ref)
            by_name[name].update(cosine_min=float(c.min()), cosine_mean=float(c.mean()))
        all_times: dict[int, dict] = {}
        print(f"timing {len(sessions)} sessions interleaved, {args.rounds} rounds, batch {args.batch_sizes}")
        for b in args.batch_sizes:
            feeds = feeds_at(ev, b, None)
            times = measure(sessions, feeds, rounds=args.rounds, warmup=args.warmup)
            all_times[b] = times
            for name, row in summarize(times, REFERENCE).items():
                by_name[name].setdefault("latency", {})[str(b)] = row
            print(f"  batch {b}: " + ", ".join(f"{n} {by_name[n]['latency'][str(b)]['median_ms']:.1f}"
                                            for n in sessions))
        md = table(rows, args.batch_sizes, f"{fp['int8_kind']} ({fp['cpu']}, {args.threads} threads)"
                   + (" — SMALL smoke-test model, not figures" if small else ""))
        print()
        print(md)
        verdict = summary(rows, all_times, model["budget_min_cosine"])
        print()
        for line in verdict["lines"]:
            print(line)
        eval_shape = {k: list(v.shape) for k, v in ev.items()}
        out = {"benchmark": "peers", "model": args.model, "small": small,
               "command": "benchmarks/peers.py " + " ".join(sys.argv[1:] if argv is None else argv),
               "machine": fp, "reference": REFERENCE,
               "settings": {"batch_sizes": args.batch_sizes, "rounds": args.rounds, "warmup": args.warmup,
                            "eval_rows": args.eval, "calibration_rows": args.calibration, "eval_shape": eval_shape,
                            "compile": args.compile, "planner_seconds": args.planner_seconds},
               "model_config": model["config"], "steps": steps, "mmcompress": mm_info, "rows": rows,
               "summary": verdict, "table_md": md}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2, default=str) + "\n")
        print(f"\nwrote {args.out}")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
