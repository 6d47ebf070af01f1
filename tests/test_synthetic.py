"End-to-end checks of the synthetic data set as installed (keypointdiffuser.synthetic)."
import hashlib, inspect, os, subprocess, sys

import numpy as np
import pytest

import keypointdiffuser.synthetic as syn


def _digest(s: dict) -> str:
    h = hashlib.sha256()
    for k in ("points", "parts", "keypoints", "present"): h.update(np.ascontiguousarray(s[k]).tobytes())
    return h.hexdigest()


def test_public_api_signatures():
    "The names and signatures other modules code against."
    assert set(syn.CATEGORIES) >= {"chair", "table", "airplane", "mug", "guitar", "knife"}
    assert list(inspect.signature(syn.make_shape).parameters)[:5] == ["category", "index", "split", "seed", "n_points"]
    assert list(inspect.signature(syn.generate).parameters)[:7] == ["category", "n_shapes", "n_points", "split", "seed", "start", "progress"]
    assert list(inspect.signature(syn.plot_gallery).parameters)[:5] == ["shapes", "n", "ncols", "labels", "seed"]
    spec = syn.category_spec("chair")
    assert spec.name == "chair" and spec.part_names == ["back", "seat", "leg", "arm"]
    assert {"seat_front_left", "back_top_left", "leg_front_left", "arm_front_left"} <= set(spec.keypoint_names)
    assert syn.category_spec("airplane").part_names == ["body", "wing", "tail", "engine"]
    assert syn.category_spec("table").part_names == ["top", "leg", "support"]
    assert syn.category_spec("mug").part_names == ["body", "handle"]
    assert syn.category_spec("guitar").part_names == ["head", "body", "neck"]
    assert syn.category_spec("knife").part_names == ["blade", "handle"]
    with pytest.raises(ValueError, match="unknown category 'lamp'"): syn.category_spec("lamp")


def test_same_shape_in_another_process():
    "Shapes depend only on (category, split, index, seed): a fresh interpreter with another hash seed agrees."
    code = ("import hashlib, numpy as np, keypointdiffuser.synthetic as syn\n"
            "s = syn.make_shape('airplane', 17, split='val', seed=3, n_points=512)\n"
            "h = hashlib.sha256()\n"
            "for k in ('points', 'parts', 'keypoints', 'present'): h.update(np.ascontiguousarray(s[k]).tobytes())\n"
            "print(h.hexdigest())")
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout.strip()
    assert out == _digest(syn.make_shape("airplane", 17, split="val", seed=3, n_points=512))


@pytest.mark.parametrize("category", syn.CATEGORIES)
def test_generate_every_category(category):
    "Small sets of every category: canonical arrays, normalised, NaN exactly where absent, unique ids."
    d = syn.generate(category, 6, n_points=300, split="test", start=10)
    M = len(syn.category_spec(category).keypoint_names)
    assert d["points"].shape == (6, 300, 3) and d["points"].dtype == np.float32
    assert d["parts"].shape == (6, 300) and d["parts"].dtype == np.int64
    assert d["keypoints"].shape == (6, M, 3) and d["present"].shape == (6, M)
    assert np.array_equal(np.isnan(d["keypoints"]).any(-1), ~d["present"])
    assert np.allclose(d["points"].reshape(6, -1).min(1), -1, atol=1e-6)
    assert np.allclose(d["points"].reshape(6, -1).max(1), 1, atol=1e-6)
    assert list(d["ids"]) == [f"{category}-test-{i:06d}" for i in range(10, 16)]
    assert d["parts"].max() < len(d["part_names"]) and d["parts"].min() >= 0
    assert d["present"].any(1).all()
    s = syn.make_shape(category, 12, split="test", n_points=300)
    assert np.array_equal(s["points"], d["points"][2])


def test_gallery_writes_a_png(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = syn.plot_gallery(syn.generate("knife", 3, n_points=256), n=8, ncols=2)
    assert len([a for a in fig.axes if a.name == "3d"]) == 3
    fig.savefig(tmp_path / "g.png"); plt.close(fig)
    assert (tmp_path / "g.png").stat().st_size > 1000
