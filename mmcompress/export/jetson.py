"""Build-on-device bundles for Jetson boards (recipe `export.jetson`, docs/gpu.md).

TensorRT engines run only on the TensorRT version, GPU and OS they were built with, and a JetPack pins its
TensorRT, so the engines are built on the board. A bundle `bundles/jetson-jp<version>/` holds what that needs:

  onnx/<variant>/<tower>.onnx   the graphs (each variant's own towers)
  build.sh                      trtexec with the flags of that JetPack's TensorRT (runtimes/tensorrt_adapter.py), one
                                optimisation profile per graph, a shared timing cache, logs/ per build
  eval.npz, bundle.json         the eval sample with the teacher's outputs, the task, each variant's budgets, and
                                per engine its ONNX sha256, precision, profile and trtexec arguments
  check.py                      the board-side check (checks/board_check.py as it is): Python >= 3.8, numpy,
                                TensorRT's and CUDA's Python bindings, no mmcompress
  README.md                     what to run on the board

On the board: `./build.sh`, then `python3 check.py` (each variant on the eval sample against the teacher with its
own budgets: task metric, agreement, cosine per tower, latency; the share of layers that fell back from the DLA
to the GPU, from the build log, where the board has a DLA). `mmcompress check .` runs the same file.
"""
from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import numpy as np

from mmcompress.checks import board_check
from mmcompress.runtimes import tensorrt_adapter as tensorrt

BUILD_TIMING_CACHE = "timing.cache"
BUNDLE_VERSION = 2  # 2: per-variant budgets (`variants`), boards, check.py


def shipped(recipe) -> list:
    j = recipe.export.jetson
    if j.variants is not None:
        by_name = {v.name: v for v in recipe.export.variants}
        return [by_name[n] for n in j.variants]
    from mmcompress.recipe import tensorrt_unbuildable

    return [v for v in recipe.export.variants if tensorrt_unbuildable(v) is None]


def eval_sample(bundle, inputs, teacher_emb: dict, rows: int) -> tuple[dict[str, np.ndarray], dict]:
    """The first `rows` eval rows of row-aligned towers (image, fusion) and every text row (its blocks index
    captions and prompts), with the teacher's outputs and the labels of the kept rows. -> (arrays, meta)."""
    arrays, keep = {}, {}
    for tower, feeds in inputs.feeds.items():
        n = len(next(iter(feeds.values())))
        keep[tower] = n if tower == "text" else min(rows, n)
        for k, v in feeds.items():
            arrays[f"feed/{tower}/{k}"] = v[:keep[tower]]
        arrays[f"teacher/{tower}"] = teacher_emb[tower][:keep[tower]]
    row_tower = next((t for t in ("image", "fusion") if t in keep), "text")
    if inputs.labels is not None:
        arrays["labels"] = inputs.labels[:keep[row_tower]]
    if inputs.caption_of_image is not None:
        arrays["caption_of_image"] = inputs.caption_of_image[:keep[row_tower]]
    meta = {"rows": keep, "blocks": {k: list(v) for k, v in inputs.blocks.items()}, "n_classes": inputs.n_classes,
            "n_templates": inputs.n_templates, "trim": inputs.trim, "key": inputs.key}
    return arrays, meta


def write(recipe, jetpack: str, artifacts: dict, bundle, inputs, teacher_emb: dict, folder: Path,
          task_args: dict) -> tuple[dict, dict]:
    """One bundle for one JetPack version into `folder`. -> (files, extra) for the stage manifest."""
    from mmcompress.artifact import atomic_path, save_npz, sha256_file

    j = recipe.export.jetson
    stack = tensorrt.stack(jetpack, (j.tensorrt or {}).get(jetpack))
    trt_version = stack["tensorrt"]
    boards = [b for b in stack["boards"] if j.boards is None or b in j.boards]
    batch, seq = tensorrt.profile_ranges(recipe, bundle, inputs, j.batch, j.seq_len)
    arrays, meta = eval_sample(bundle, inputs, teacher_emb, j.eval_rows)
    tune = j.accuracy_tuner is not None and tensorrt.features(trt_version).accuracy_tuner
    engines, commands, variants = [], [], {}
    for v in [v for v in shipped(recipe) if v.name in artifacts]:  # a variant whose stage failed has no graphs
        a = artifacts[v.name]
        variants[v.name] = {"quantize": v.quantize, "budgets": recipe.budgets_for(v).model_dump()}
        # its own towers' graphs; a quantize: none variant ships every fp32 graph
        for tower in [t for t in a.graphs if a.owns(t)] or list(a.graphs):
            src = Path(a.graphs[tower])
            rel_onnx = f"onnx/{v.name}/{tower}.onnx"
            (folder / rel_onnx).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, folder / rel_onnx)
            profile = tensorrt.profile_for(tensorrt.graph_inputs(src), batch, seq)
            precision = tensorrt.precision_of(a, tower)
            engine = f"engines/{v.name}/{tower}.engine"
            log = f"logs/{v.name}-{tower}.log"
            tuner = (tensorrt.tuner_args(j.accuracy_tuner.threshold, j.accuracy_tuner.algorithm,
                                         *reference(folder, f"{v.name}-{tower}", arrays, meta, tower, batch[1],
                                                    tensorrt.graph_output(src)))
                     if tune else None)
            args = tensorrt.trtexec_args(trt_version, precision, rel_onnx, engine, profile,
                                         workspace_mb=j.workspace_mb, timing_cache=BUILD_TIMING_CACHE,
                                         dla_core=j.dla_core, gpu_fallback=j.gpu_fallback,
                                         layer_info=f"logs/{v.name}-{tower}.layers.json", tuner=tuner)
            engines.append({"variant": v.name, "tower": tower, "precision": precision, "onnx": rel_onnx,
                            "onnx_sha256": sha256_file(folder / rel_onnx), "engine": engine, "log": log,
                            "profile": profile.as_json(), "trtexec": args})
            commands.append((f"{v.name}/{tower}", log, args))
    save_npz(folder / "eval.npz", **arrays)
    manifest = {"format": "mmcompress-jetson-bundle", "version": BUNDLE_VERSION, "recipe": recipe.name,
                "jetpack": jetpack, **{k: stack[k] for k in ("tensorrt", "cuda", "l4t")}, "boards": boards,
                "dla_core": j.dla_core, "gpu_fallback": j.gpu_fallback, "workspace_mb": j.workspace_mb,
                "task": bundle.task, "towers": {t: list(bundle.specs[t].inputs) for t in bundle.towers},
                "outputs": bundle.outputs, "eval": meta, **task_args, "variants": variants, "engines": engines}
    with atomic_path(folder / "bundle.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2))
    script = build_script(jetpack, trt_version, commands)
    with atomic_path(folder / "build.sh") as tmp:
        tmp.write_text(script)
        tmp.chmod(0o755)
    with atomic_path(folder / "check.py") as tmp:  # the board's check, byte for byte the module mmcompress runs
        shutil.copyfile(board_check.__file__, tmp)
        tmp.chmod(0o755)
    (folder / "README.md").write_text(readme(manifest))
    files = {"bundle.json": {"engines": len(engines)}, "build.sh": {"tensorrt": trt_version},
             "eval.npz": {"rows": meta["rows"]}, "check.py": {"python": ">=3.8"}}
    return files, {"jetpack": jetpack, "tensorrt": trt_version, "engines": [e["engine"] for e in engines]}


def reference(folder: Path, name: str, arrays: dict, meta: dict, tower: str, rows: int, output: str) -> tuple:
    """The accuracy tuner's data for one engine: the first `rows` eval rows of the tower (text cut to the columns
    they use, so the teacher's outputs still hold for them) as raw files under ref/<name>/, and the teacher's
    outputs for those rows. -> (inputs name -> file, shapes name -> shape, outputs name -> file)."""
    feeds = {k.split("/", 2)[2]: v[:rows] for k, v in arrays.items() if k.startswith(f"feed/{tower}/")}
    if meta["trim"].get(tower):
        feeds = board_check.trim_padding(feeds)
    (folder / "ref" / name).mkdir(parents=True, exist_ok=True)
    files, shapes = {}, {}
    for k, v in feeds.items():
        files[k], shapes[k] = f"ref/{name}/{k}.bin", list(v.shape)
        (folder / files[k]).write_bytes(np.ascontiguousarray(v).tobytes())
    out = f"ref/{name}/{output}.teacher.bin"
    teacher = arrays[f"teacher/{tower}"][:len(next(iter(feeds.values())))]
    (folder / out).write_bytes(np.ascontiguousarray(teacher, dtype=np.float32).tobytes())
    return files, shapes, {output: out}


def build_script(jetpack: str, trt_version: str, commands: list[tuple[str, str, list[str]]]) -> str:
    want = ".".join(trt_version.split(".")[:2])
    lines = [
        "#!/usr/bin/env bash",
        f"# Builds this bundle's TensorRT engines on the Jetson board (JetPack {jetpack}, TensorRT {trt_version}).",
        "# Written by mmcompress. Engines only run on the TensorRT, GPU and OS they were built with: build them here.",
        "# Usage: ./build.sh   (TRTEXEC=/path/to/trtexec to use another trtexec; logs in logs/)",
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
        'TRTEXEC="${TRTEXEC:-/usr/src/tensorrt/bin/trtexec}"',
        f'WANT="{want}"',
        'if [ ! -x "$TRTEXEC" ]; then',
        f'  echo "build.sh: no trtexec at $TRTEXEC; install TensorRT (it comes with JetPack {jetpack}) or set '
        f'TRTEXEC=/path/to/trtexec" >&2',
        "  exit 4",
        "fi",
        "# trtexec prints its version as [TensorRT v8502] (8.5.2) or [TensorRT v100300] (10.3.0)",
        'code=$("$TRTEXEC" --help 2>&1 | sed -n \'s/.*\\[TensorRT v\\([0-9]*\\)\\].*/\\1/p\' | head -n 1 || true)',
        'if [ -n "$code" ]; then',
        '  if [ "$code" -ge 100000 ]; then have="$((code / 10000)).$(((code / 100) % 100))"',
        '  else have="$((code / 1000)).$(((code / 100) % 10))"; fi',
        '  if [ "$have" != "$WANT" ] && [ "${MMCOMPRESS_ANY_TENSORRT:-0}" != "1" ]; then',
        f'    echo "build.sh: this bundle is for TensorRT $WANT (JetPack {jetpack}) and this board has TensorRT '
        f'$have, whose trtexec flags differ; write a bundle for this board\'s JetPack (export.jetson.jetpack) or '
        f'set MMCOMPRESS_ANY_TENSORRT=1 to try anyway" >&2',
        "    exit 4",
        "  fi",
        "fi",
        "mkdir -p logs",
        "build() {",
        '  local name="$1" log="$2" rc=0',
        "  shift 2",
        '  echo "building $name (log: $log)"',
        '  "$TRTEXEC" "$@" > "$log" 2>&1 || rc=$?',
        '  if [ "$rc" -eq 137 ]; then',
        '    echo "build.sh: building $name was killed (exit 137: out of memory); lower export.jetson.workspace_mb, '
        'stop other programs or add swap; $log has the build log" >&2',
        "    exit 3",
        '  elif [ "$rc" -ne 0 ]; then',
        '    echo "build.sh: building $name failed (exit $rc); the end of $log:" >&2',
        '    tail -n 20 "$log" >&2',
        "    exit 3",
        "  fi",
        "}",
    ]
    if any(a.startswith("--accuracyThreshold=") for _, _, args in commands for a in args):
        lines += [
            "# the accuracy-aware tuner's flags (TensorRT >= 11.1): refuse a trtexec that does not list them",
            'help=$("$TRTEXEC" --help 2>&1 || true)',
            f"for flag in {' '.join(tensorrt.TUNER_FLAGS)}; do",
            '  case "$help" in',
            '    *"$flag"*) ;;',
            '    *) echo "build.sh: this trtexec does not list $flag (the accuracy-aware tuner of TensorRT >= 11.1, '
            'export.jetson.accuracy_tuner); use the TensorRT this bundle is for or write the bundle without '
            'accuracy_tuner" >&2',
            "       exit 4 ;;",
            "  esac",
            "done",
        ]
    for name, log, args in commands:
        engine_dir = str(Path(next(a for a in args if a.startswith("--saveEngine=")).split("=", 1)[1]).parent)
        lines.append(f"mkdir -p {shlex.quote(engine_dir)}")
        lines.append(" ".join(["build", shlex.quote(name), shlex.quote(log), *map(shlex.quote, args)]))
    lines.append(f'echo "built {len(commands)} engine(s); check them on this board: python3 check.py"')
    return "\n".join(lines) + "\n"


def readme(m: dict) -> str:
    rows = "\n".join(f"| {e['variant']} | {e['tower']} | {e['precision']} | `{e['engine']}` |" for e in m["engines"])
    budgets = "\n".join(f"- {name}: " + (", ".join(f"{k} {b}" for k, b in v["budgets"].items() if b is not None)
                                         or "no budget") for name, v in m["variants"].items())
    boards = ", ".join(tensorrt.BOARDS[b]["name"] for b in m["boards"])
    return f"""# {m['recipe']}: TensorRT bundle for JetPack {m['jetpack']}

Made by mmcompress for JetPack {m['jetpack']} (TensorRT {m['tensorrt']}, CUDA {m['cuda']}, L4T {m['l4t']}) on
{boards}. TensorRT engines run only on the TensorRT version, GPU and OS they were built with, so build them on
the board:

```
./build.sh                 # trtexec for each graph below; logs/ holds each build's log
python3 check.py           # each variant on the eval sample ({m['eval']['rows']}) against the teacher's outputs
```

`check.py` needs Python >= 3.8, numpy, TensorRT's Python bindings (JetPack's python3-libnvinfer) and the CUDA
bindings (`pip install cuda-python`, the release of the board's CUDA); not mmcompress. It fails (exit 4) when
the engines were built for another TensorRT or GPU (rebuild with ./build.sh), reports the task metric
({m['task']}), top-1 agreement and cosine to the teacher per tower, latency, and with a DLA core the share of
layers that fell back to the GPU (from the build log); it exits 1 when a variant misses one of its budgets:

{budgets}

| variant | tower | precision | engine |
|---|---|---|---|
{rows}

DLA core: {m['dla_core'] if m['dla_core'] is not None else 'none (GPU)'}; workspace {m['workspace_mb']} MiB.
"""
