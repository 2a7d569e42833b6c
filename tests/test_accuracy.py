from __future__ import annotations

import numpy as np
import pytest

from mmcompress.checks import accuracy, fidelity


def test_zero_shot_max_and_mean_ensembles():
    # 2 classes x 2 templates in 2-D; image 0 is near class 0's second template only
    prompts = np.array([[[1, 0], [0.6, 0.8]], [[0, 1], [-0.6, 0.8]]], dtype=np.float32)  # (C=2, T=2, D=2)
    images = np.array([[0.6, 0.8], [0.0, 1.0], [1.0, 0.0]])
    labels = np.array([0, 1, 0])
    top = accuracy.zero_shot(accuracy.zero_shot_scores(images, prompts, "max"), labels)
    assert top["top1"] == 100.0 and top["n"] == 3
    mean = accuracy.zero_shot_scores(images, prompts, "mean")
    assert mean.shape == (3, 2)
    assert np.argmax(mean[1]) == 1


def test_recall_counts_equal_captions_as_hits():
    # three images; captions 0, 0, 1; caption embeddings on the axes
    img = np.array([[1, 0.1], [1, -0.05], [0.2, 1]])
    cap = np.array([[1, 0], [0, 1]])
    r = accuracy.recall(img, cap, np.array([0, 0, 1]), [1])
    assert r == {"image_to_text@1": 100.0, "text_to_image@1": 100.0}
    # captions 1, 0, 0: images 0 and 2 rank the other caption first; caption 1's best image (2) is wrong
    r = accuracy.recall(img, cap, np.array([1, 0, 0]), [1, 2])
    assert round(r["image_to_text@1"], 2) == 33.33 and r["image_to_text@2"] == 100.0
    assert round(r["text_to_image@1"], 2) == 66.67  # queries: caption 1 (miss), caption 0 twice (hit)


def test_cosine_and_agreement():
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    b = np.array([[1.0, 0.0], [1.0, 1.0]])
    c = fidelity.cosine_to_teacher(a, b)
    assert c["mean"] == pytest.approx((1 + np.sqrt(0.5)) / 2) and c["min"] == pytest.approx(np.sqrt(0.5))
    assert fidelity.top1_agreement(np.array([[1, 0], [0, 1]]), np.array([[1, 0], [1, 0]])) == 50.0
