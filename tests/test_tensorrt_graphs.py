"""Graphs shaped for TensorRT (`target: tensorrt`): the QDQ form its explicit quantization consumes and an fp16
form with the overflow-prone reductions kept in fp32, both checked on ONNX Runtime's CPU like any artifact."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import yaml
from onnx import numpy_helper

from conftest import TINY, invoke  # the trt_run fixture: conftest.py

def _consumers(graph) -> dict[str, list]:
    out: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


@pytest.mark.parametrize("tower", ["image", "text"])
def test_int8_graph_is_symmetric_s8s8_per_channel_qdq_with_a_pair_per_consumer(trt_run, tower):
    g = onnx.load(str(trt_run[0] / "variants" / "trt-int8" / f"{tower}.onnx")).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    qs = [n for n in g.node if n.op_type == "QuantizeLinear"]
    dqs = [n for n in g.node if n.op_type == "DequantizeLinear"]
    assert qs and dqs
    for n in qs + dqs:  # zero points: int8 and 0 (TensorRT takes symmetric int8 only)
        zp = inits[n.input[2]]
        assert zp.dtype == np.int8 and not zp.any(), n.name
    weights = [n for n in dqs if n.input[0] in inits]  # int8 weights, scales per output channel
    assert weights and all(inits[n.input[0]].dtype == np.int8 for n in weights)
    assert all(inits[n.input[1]].ndim == 1 and inits[n.input[1]].size > 1 for n in weights)
    cons = _consumers(g)
    for n in dqs:  # dedicated pairs: a dequantized tensor feeds one quantized op (a Shape may read it too)
        assert len([c for c in cons.get(n.output[0], []) if c.op_type in ("MatMul", "Gemm", "Conv")]) <= 1, n.name
    producer = {o: n for n in g.node for o in n.output}

    def dq(name):
        return producer.get(name) is not None and producer[name].op_type == "DequantizeLinear"
    products = [n for n in g.node if n.op_type in ("MatMul", "Gemm")
                and any(i in inits or (dq(i) and producer[i].input[0] in inits) for i in n.input[:2])]
    quantized = [n for n in products if all(dq(i) for i in n.input[:2])]
    assert products and len(quantized) == len(products)  # every weight product is Q/DQ'd, activation side too


def test_fp16_graph_keeps_layernorm_and_softmax_in_fp32(trt_run):
    for tower in ("image", "text"):
        m = onnx.load(str(trt_run[0] / "variants" / "trt-fp16" / f"{tower}.onnx"))
        producer = {o: n for n in m.graph.node for o in n.output}

        def cast_to(name):  # the type a Cast node makes `name`, or None when something else produces it
            p = producer.get(name)
            return next((a.i for a in p.attribute if a.name == "to"), None) if p is not None and p.op_type == "Cast" else None
        kept = [n for n in m.graph.node if n.op_type in ("LayerNormalization", "Softmax")]
        assert kept, tower
        for n in kept:  # fed through a cast to float32, and cast back to half after
            assert cast_to(n.input[0]) == onnx.TensorProto.FLOAT, (tower, n.name)
        mm = [n for n in m.graph.node if n.op_type == "MatMul"]
        halves = {i.name for i in m.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16}
        assert mm and all(any(i in halves for i in n.input) for n in mm if any(i in
                          {x.name for x in m.graph.initializer} for i in n.input))  # weight products are half
    facts = json.loads((trt_run[0] / "variants" / "trt-fp16" / "manifest.json").read_text())
    assert "LayerNormalization" in facts["files"]["image.onnx"]["quantizer"]["fp32_ops_in_graph"]


def test_tensorrt_graphs_are_checked_like_any_artifact_and_say_what_ran(trt_run):
    rep = trt_run[1]
    for name in ("trt-int8", "trt-fp16"):
        a = rep["artifacts"][name]
        assert a["verdict"] == "pass"
        assert min(a["fidelity"][t]["min"] for t in ("image", "text")) > 0.99
    int8 = rep["artifacts"]["trt-int8"]["int8"]
    assert int8["target"] == "tensorrt" and int8["reduce_range"] is False
    assert "TensorRT" in int8["note"] and "latency" in int8["note"]


def test_tensorrt_int8_refuses_asymmetric_or_7_bit_settings(tmp_path):
    r = yaml.safe_load(TINY.read_text())
    for bad, word in (({"activation_type": "uint8"}, "activation_type"), ({"reduce_range": True}, "reduce_range")):
        r["export"]["variants"] = [{"name": "x", "quantize": "static", "target": "tensorrt", **bad}]
        path = tmp_path / "recipe.yaml"
        path.write_text(yaml.safe_dump(r, sort_keys=False))
        result = invoke("validate", str(path))
        assert result.exit_code == 2 and word in result.output and "recipe.yaml:" in result.output, result.output
