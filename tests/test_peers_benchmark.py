"""benchmarks/peers.py --small end to end (a tiny ViT tower): every peer row either has figures (median and
95% interval at each batch, speedup over PyTorch fp32, min/mean cosine, what ran it) or says why it did not run;
the JSON carries the machine fingerprint. OpenVINO, NNCF and torchao are optional: absent, their rows carry the
why-not note and the test still holds."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PEERS = ["pytorch-fp32", "pytorch-bf16-autocast", "ort-fp32", "ort-int8-dynamic-plain", "openvino-fp32-f32",
         "openvino-fp32-bf16", "openvino-nncf-int8", "torchao-int8-eager", "torchao-int8-compile",
         "mmcompress-int8-dynamic", "mmcompress-int8-static"]
BATCHES = [1, 4]


@pytest.mark.slow
def test_small_peers_run_gives_figures_or_a_reason_for_every_row(tmp_path):
    out = tmp_path / "peers.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "peers.py"), "--small", "--model", "vit-b32",
                           "--no-planned", "--rounds", "3", "--batch-sizes", *map(str, BATCHES), "--out", str(out)],
                          cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-4000:]
    got = json.loads(out.read_text())

    assert got["benchmark"] == "peers" and got["model"] == "vit-b32" and got["small"] is True
    m = got["machine"]
    for key in ("cpu", "isa", "int8_kind", "threads", "versions", "cpu_bf16", "peer_versions"):
        assert key in m, key
    assert m["int8_kind"] in got["table_md"]  # the table names the CPU kind it was measured on
    assert got["settings"]["batch_sizes"] == BATCHES and got["reference"] == "pytorch-fp32"

    rows = {r["name"]: r for r in got["rows"]}
    assert set(PEERS) <= set(rows), sorted(set(PEERS) - set(rows))
    # the core peers are always installed: they must have run
    for name in ("pytorch-fp32", "ort-fp32", "ort-int8-dynamic-plain", "mmcompress-int8-dynamic",
                 "mmcompress-int8-static"):
        assert rows[name]["why_not"] is None, (name, rows[name]["why_not"])
    for name, r in rows.items():
        assert r["label"], name
        if r["why_not"]:
            assert isinstance(r["why_not"], str) and "latency" not in r, name
            assert f"not run: {r['why_not']}" in got["table_md"], name
            continue
        assert r["runtime"] and r["precision"], name
        assert 0.9 < r["cosine_min"] <= r["cosine_mean"] <= 1.0 + 1e-5, (name, r["cosine_min"], r["cosine_mean"])
        for b in BATCHES:
            lat = r["latency"][str(b)]
            lo, hi = lat["median_ci95_ms"]
            assert 0 < lo <= lat["median_ms"] <= hi, (name, b, lat)
            assert lat["rounds"] == 3
            if name != "pytorch-fp32":
                assert lat["speedup"] > 0 and len(lat["speedup_ci95"]) == 2, (name, b)
    assert rows["pytorch-fp32"]["cosine_min"] > 0.99999
    # mmcompress's fastest artifact within the budget against the fastest peer, from the same paired rounds
    s = got["summary"]
    assert s["min_cosine"] == 0.999 and set(s["batches"]) == {str(b) for b in BATCHES}
    for b, v in s["batches"].items():
        assert v["mmcompress_best"] in rows and v["mmcompress_best"].startswith("mmcompress-"), (b, v)
        if v["peer_best"] is not None:
            assert v["mmcompress_best_vs_peer_best"]["speedup"] > 0, (b, v)
    # rows that cannot run here say why (no --compile asked; bf16 only where the CPU has it; a missing package)
    why = rows["torchao-int8-compile"]["why_not"]  # not asked for, or torchao (the peers extra) not installed
    assert "--compile" in why or "mmcompress[peers]" in why, why
    if not m["cpu_bf16"]:
        assert "bf16" in rows["pytorch-bf16-autocast"]["why_not"]
    for pkg, names in (("openvino", ["openvino-fp32-f32", "openvino-nncf-int8"]), ("nncf", ["openvino-nncf-int8"]),
                       ("torchao", ["torchao-int8-eager"])):
        for name in names:
            if m["peer_versions"][pkg] is None:
                assert "not installed" in rows[name]["why_not"], name
            else:
                assert rows[name]["why_not"] is None, (name, rows[name]["why_not"])
