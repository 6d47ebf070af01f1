"End-to-end tests of folders of loose point-cloud files: `kpd data info` on a folder, and a corrupt file through load_dataset."
import json, os, re, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
from fastcore import test as fct  # module import: pytest must not collect test_eq & co

from keypointdiffuser.data import detect_layout, load_dataset, read_cloud, read_folder, write_ply

KPD = Path(sys.executable).with_name("kpd")


def write_mug_folder(root, n=12, seed=0):
    "n synthetic mugs in mixed formats (.npy, binary .ply, .xyz, .txt, ascii .ply), with parts, part names and keypoints."
    syn = pytest.importorskip("keypointdiffuser.synthetic")
    g = syn.generate("mug", n, n_points=600, seed=seed)
    rng = np.random.default_rng(seed)
    root = Path(root); (root / "clouds").mkdir(parents=True); (root / "parts").mkdir()
    ann = {}
    for i in range(n):
        name, keep = f"mug_{i:02d}", np.sort(rng.choice(600, int(rng.integers(400, 601)), replace=False))
        X = g["points"][i, keep] * 90 + 40   # (N_i, 3) in "millimetres", off the origin
        kind = i % 5
        if kind == 0: np.save(root / "clouds" / f"{name}.npy", X)
        elif kind == 1: write_ply(root / "clouds" / f"{name}.ply", X)
        elif kind == 2: np.savetxt(root / "clouds" / f"{name}.xyz", X, fmt="%.6f")
        elif kind == 3: np.savetxt(root / "clouds" / f"{name}.txt", np.c_[X, g["parts"][i, keep]], fmt="%.6f")
        else: write_ply(root / "clouds" / f"{name}.ply", X, binary=False)
        np.save(root / "parts" / f"{name}.npy", g["parts"][i, keep])
        ann[name] = {k: (g["keypoints"][i, m] * 90 + 40).tolist() for m, k in enumerate(g["keypoint_names"]) if g["present"][i, m]}
    (root / "keypoints.json").write_text(json.dumps(ann))
    (root / "part_names.json").write_text(json.dumps(list(g["part_names"])))
    return root, g


def run_kpd(*args):
    if not KPD.exists(): pytest.skip(f"the kpd console script is not installed beside {sys.executable}")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(KPD), *map(str, args)], capture_output=True, text=True, env=env, timeout=300)


def test_kpd_data_info_on_a_folder(tmp_path):
    root, g = write_mug_folder(tmp_path / "mugs")
    assert detect_layout(root) == "folder"
    r = run_kpd("data", "info", root, "--category", "mug")
    assert r.returncode == 0, r.stderr
    m = re.search(r"category 'mug': (\d+) shapes x (\d+) points", r.stdout)
    assert m and (int(m.group(1)), int(m.group(2))) == (12, 2048), r.stdout
    assert "train 10, val 1, test 1" in r.stdout                      # the seeded 80/10/10 split of 12 shapes
    assert all(n in r.stdout for n in g["part_names"]) and "rim_front" in r.stdout
    # without the category, the command fails cleanly, saying what to pass
    r = run_kpd("data", "info", root)
    assert r.returncode == 2 and "pass the category" in r.stderr


def test_folder_matches_the_files(tmp_path):
    root, g = write_mug_folder(tmp_path / "mugs")
    S = load_dataset(root, category="mug", n_points=300, seed=3)
    R = read_folder(root, "mug", n_points=300, seed=3, normalize=True)   # load_dataset normalises, ready to train
    for k in ("points", "parts", "present", "ids", "split"): fct.test_eq(getattr(S, k), getattr(R, k))
    fct.test_close(np.abs(S.points).max((1, 2)), np.ones(len(S)), eps=1e-6)
    S = read_folder(root, "mug", n_points=300, seed=3)   # as in the files
    fct.test_eq(S.part_names, list(g["part_names"]))
    for i, sid in enumerate(S.ids):   # every point is a row of its file (brute force), carrying that row's label
        f = next((root / "clouds").glob(f"{sid}.*"))
        X, lab = read_cloud(f), np.load(root / "parts" / f"{sid}.npy")
        d = ((S.points[i][:, None] - X[None]) ** 2).sum(-1)            # (300, N_i)
        j = d.argmin(1)
        fct.test_close(d.min(1).max(), 0, eps=1e-10); fct.test_eq(len(set(j.tolist())), 300); fct.test_eq(S.parts[i], lab[j])


def test_corrupt_ply_names_the_file(tmp_path):
    root, _ = write_mug_folder(tmp_path / "mugs")
    f = root / "clouds" / "mug_06.ply"   # binary
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"mug_06\.ply.*truncated"): load_dataset(root, category="mug")
    f.write_bytes(b"solid mesh\nfacet normal 0 0 1\n")
    with pytest.raises(ValueError, match=r"mug_06\.ply is not a PLY file"): load_dataset(root, category="mug")
    r = run_kpd("data", "info", root, "--category", "mug")
    assert r.returncode == 2 and "mug_06.ply is not a PLY file" in r.stderr
