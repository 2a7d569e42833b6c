from __future__ import annotations

import pytest

from mmcompress import artifact as art


def test_atomic_path_leaves_nothing_when_interrupted(tmp_path):
    target = tmp_path / "model.onnx"
    with pytest.raises(RuntimeError):
        with art.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_manifest_valid_only_for_same_key_and_intact_files(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"abc")
    m = art.write_manifest(tmp_path, stage="s", cache_key="k1", files={"a.bin": {"tower": "image"}}, config={},
                           parents={})
    assert m["files"]["a.bin"]["sha256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert art.read_valid_manifest(tmp_path, "k1")["stage"] == "s"
    assert art.read_valid_manifest(tmp_path, "k2") is None
    (tmp_path / "a.bin").write_bytes(b"abd")  # same size, different content
    assert art.read_valid_manifest(tmp_path, "k1") is None


def test_stable_hash_ignores_key_order():
    assert art.stable_hash({"a": 1, "b": [1, 2]}) == art.stable_hash({"b": [1, 2], "a": 1})
