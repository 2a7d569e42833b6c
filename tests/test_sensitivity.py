"""Per-node int8 sensitivity on a real exported encoder with activation outliers (the kind trained BERT-family
encoders carry): the analysis names the nodes that carry them, and keeping those float restores fidelity."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def outlier_bert(tmp_path_factory):
    """A tiny BERT exported to ONNX through the same path as users' models, before and after outliers were
    added (same function), with rows of real token ids."""
    import torch
    from transformers import BertModel

    from mmcompress import examples
    from mmcompress.export.onnx import export_tower
    from mmcompress.models.hf import load
    from mmcompress.recipe import TeacherConfig

    root = tmp_path_factory.mktemp("outliers")
    examples.tiny_bert(root / "plain", seed=1, initializer_range=0.1)
    model = BertModel.from_pretrained(root / "plain")
    kept = examples.add_attention_outliers(model, channels=2, scale=64.0)
    model.save_pretrained(root / "outliers")
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (root / "plain" / f).exists():
            (root / "outliers" / f).write_bytes((root / "plain" / f).read_bytes())
    out = {}
    for name in ("plain", "outliers"):
        bundle = load(TeacherConfig(hf=str(root / name)), root)
        texts = [" ".join(examples.WORDS[(i * 7 + j) % len(examples.WORDS)] for j in range(3 + i % 9)) for i in range(96)]
        feeds = bundle.text_preprocess(texts)
        path = root / f"{name}.onnx"
        export_tower(bundle.towers["text"], bundle.specs["text"], feeds, path, opset=18, exporter="dynamo")
        with torch.no_grad():
            emb = bundle.towers["text"](**{k: torch.from_numpy(v) for k, v in feeds.items()}).numpy()
        out[name] = (path, feeds, emb)
    return out, kept


def _probe(path, feeds):
    from mmcompress.export import quantize_onnx, sensitivity
    from mmcompress.recipe import DynamicVariant

    cfg = DynamicVariant(name="d", quantize="dynamic")
    int8 = {"target": "avx2", "reduce_range": True}
    return sensitivity.Probe(path, feeds, threads=1,
                             quantize=lambda src, dst, include, exclude: quantize_onnx.quantize_dynamic(
                                 src, dst, cfg, int8, include=include, exclude=exclude))


def test_outliers_keep_the_function_and_break_dynamic_int8(outlier_bert):
    (plain_path, feeds, plain_emb), (path, _, emb) = outlier_bert[0]["plain"], outlier_bert[0]["outliers"]
    np.testing.assert_allclose(emb, plain_emb, atol=1e-4)  # same function in PyTorch
    plain, outl = _probe(plain_path, feeds), _probe(path, feeds)
    assert plain.cosine()["min"] > 0.99          # the plain model quantizes fine
    assert outl.cosine()["min"] < 0.99           # the outliers ruin per-tensor dynamic int8


def test_sensitivity_names_the_outlier_nodes_and_keeping_them_float_restores_fidelity(outlier_bert):
    from mmcompress.export import sensitivity

    models, kept_modules = outlier_bert
    path, feeds, _ = models["outliers"]
    probe = _probe(path, feeds)
    steps = []
    s = sensitivity.analyse(probe, "text", "dynamic", top_blocks=2, top_nodes=4, progress=lambda d, n: steps.append((d, n)))
    nodes = {n.name: n for n in s.nodes}
    assert len(nodes) == 2 * 6                     # per layer q, k, v, attention out, FFN in, FFN out
    assert {n.block for n in s.nodes} == {"encoder.layer.0", "encoder.layer.1"}
    assert {n.module for n in s.nodes} >= {"encoder.layer.0.attention.self.query", "encoder.layer.1.output.dense"}
    assert steps[-1][0] == steps[-1][1]            # progress reaches its total
    worst = s.ranking()[:len(kept_modules)]
    assert {nodes[w].module for w in worst} == set(kept_modules), [nodes[w].module for w in s.ranking()]
    assert len(worst) == 4
    fixed = probe.cosine(exclude=worst)
    assert fixed["min"] > 0.99 > s.full["min"], (fixed, s.full)
    rows = s.to_json()["nodes"]
    assert rows[0]["module"] in kept_modules and "leave_out" in rows[0]
