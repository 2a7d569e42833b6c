"""Property-based: recipes mutated at random (wrong types, deleted, duplicated and unknown keys, random strings,
out-of-range numbers) either validate (exit 0) or are recipe errors (exit 2) naming `file:line`; never a
traceback, never another exit code. 1,500 cases by default (MMCOMPRESS_FUZZ_CASES changes it)."""
from __future__ import annotations

import copy
import os
import re

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, invoke

BASE = """\
name: fuzz
seed: 3
teacher:
  zoo: shapes-clip-tiny
data:
  source: shapes
  splits: {train: 16, calibration: 16, eval: 32}
  prompts:
    templates: ["a small {colour} {shape}", "a large {colour} {shape}"]
    ensemble: max
stages:
  - distill:
      name: student
      towers: {image: {layers: 1, width: 0.5}}
      losses: {cosine: 1.0, mse: 0.5, contrastive_kd: 0.1}
      steps: 20
      batch: 8
      warmup: 2
      eval_every: 10
      checkpoint_every: 5
      precision: auto
export:
  target: auto
  onnx: {opset: 18, exporter: dynamo, parity_max_abs: 0.001}
  variants:
    - {name: fp32, model: teacher, quantize: none}
    - {name: dyn, quantize: dynamic, towers: [image], reduce_range: true, budgets: {min_speedup: 1.1}}
    - name: st
      quantize: static
      calibration: {method: percentile, percentile: 99.99, samples: 8}
      activation_matmuls: false
checks:
  batch_sizes: [1, 4]
  text_lengths: [16]
  rounds: 5
  warmup: 1
  recall_k: [1, 5]
  budgets: {max_accuracy_drop: 1.0, min_cosine: 0.99, max_latency_ms: {image: {1: 50}}, max_size_mb: 100}
"""
_BASE_DATA = yaml.safe_load(BASE)
CASES = int(os.environ.get("MMCOMPRESS_FUZZ_CASES", "1500"))
WHERE = re.compile(r"recipe\.yaml:\d+")

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 40, 2 ** 40),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                    st.sampled_from(["image", "text", "none", "static", "dynamic", "fp16", "shapes", "digits", "jsonl",
                                     "auto", "avx2", "vnni", "shapes-clip", "-1", "1e9", "", "{}", "[]", "teacher",
                                     "student", "bf16", "distill"]))
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=6), scalars, max_size=2))


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _get(node, path):
    for p in path:
        node = node[p]
    return node


@st.composite
def mutated(draw) -> str:
    data = copy.deepcopy(_BASE_DATA)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(data) if p]
        path = draw(st.sampled_from(paths))
        parent = _get(data, path[:-1])
        op = draw(st.sampled_from(["delete", "replace", "scale", "unknown", "rename"]))
        if op == "delete":
            del parent[path[-1]]
        elif op == "replace":
            parent[path[-1]] = draw(values)
        elif op == "scale":  # out-of-range numbers where numbers are expected
            old = parent[path[-1]]
            if isinstance(old, (int, float)) and not isinstance(old, bool):
                parent[path[-1]] = draw(st.sampled_from([0, -1, -old, old * 10 ** 6, 0.5, 2 ** 31, 1e-9]))
            else:
                parent[path[-1]] = draw(values)
        elif op == "unknown" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(values)
        elif op == "rename" and isinstance(parent, dict):
            parent[str(path[-1])[:-1] or "x"] = parent.pop(path[-1])
    text = yaml.dump(data, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False)
    lines = text.splitlines()
    if lines and draw(st.integers(0, 4)) == 0:  # duplicate a line: a key written twice, or an extra list item
        i = draw(st.integers(0, len(lines) - 1))
        lines.insert(i, lines[i])
    if draw(st.integers(0, 50)) == 0:  # now and then: not a recipe at all
        return draw(st.text(max_size=40))
    return "\n".join(lines) + "\n"


@settings(max_examples=CASES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(text=mutated())
def test_mutated_recipes_validate_or_name_the_line(tmp_path_factory, text):
    path = tmp_path_factory.getbasetemp() / "recipe.yaml"
    path.write_text(text)
    result = invoke("validate", str(path))
    assert result.exit_code in (0, 2), f"exit {result.exit_code}\n{text}\n{result.output}"
    assert "Traceback" not in result.output, text
    if result.exit_code == 2:
        assert WHERE.search(result.output.replace(str(path), "recipe.yaml")), f"{text}\n{result.output}"


def test_the_base_recipe_is_valid(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(BASE)
    result = invoke("validate", str(path))
    assert result.exit_code == 0, result.output
