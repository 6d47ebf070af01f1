"Tests of keypointdiffuser.data: readers on fixtures written in each real layout, bad input, the real samples."
import json, os, shutil, warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from fastcore import test as fct  # fct.test_eq / test_close / test_fail (module import: pytest must not collect them)
from scipy.spatial import cKDTree

from keypointdiffuser.data import (
    SHAPENETPART_CATEGORIES, SHAPENETPART_PART_START, SHAPENETPART_PARTS, SHAPENETPART_SYNSETS, KEYPOINTNET_SYNSETS,
    ShapeSet, ShapeDataset, make_loader, read_shapenet_hdf5, read_shapenetpart, read_keypointnet,
    read_keypointnet_annotations, read_pcd, attach_keypoints, keypointnet_to_shapenetpart, fit_scale_translation,
    shapenetpart_split_ids, load_dataset, detect_layout, load_real_chair_subset, load_real_caps, synth_to_h5, data_info,
    global_to_local)

SHARED = Path(os.environ.get("KPD_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


@pytest.fixture
def shared():
    if not (SHARED / "keypointnet" / "chair_keypoints.npz").exists():
        pytest.skip(f"real data samples not found at {SHARED} (a copy of shared/data beside the repo, or set KPD_SHARED_DATA)")
    return SHARED


def synthetic_or_skip():
    try: import keypointdiffuser.synthetic as syn
    except ImportError: pytest.skip("keypointdiffuser.synthetic is not available")
    return syn


def nan_eq(a, b):
    fct.test_eq(np.isnan(a), np.isnan(b)); fct.test_eq(np.nan_to_num(a), np.nan_to_num(b))


def box(x):  # DESIGN §4 normalisation written out independently
    x = np.asarray(x, np.float64); return 2 * ((x - x.min()) / (x.max() - x.min()) - 0.5)


# ---------------------------------------------------------------- fixtures in the real layouts
def write_antao97(root, kind="shapenetpart", seed=0, names=True):
    "antao97 PointCloudDatasets: <kind>_hdf5_2048/{split}{i}.h5 + {split}{i}_id2name.json + {split}{i}_id2file.json."
    d = Path(root) / f"{kind}_hdf5_2048"; d.mkdir(parents=True)
    rng = np.random.default_rng(seed); truth = {}
    layout = {"train0": ["chair", "airplane", "chair"], "train1": ["airplane", "chair"], "val0": ["chair"], "test0": ["airplane", "chair"]}
    for chunk, cats in layout.items():
        n = len(cats)
        data = (rng.normal(size=(n, 2048, 3)) * 0.4).astype(np.float32)
        label = np.array([[SHAPENETPART_CATEGORIES.index(c)] for c in cats], np.int64)
        files = [f"{SHAPENETPART_SYNSETS[c]}/points/{chunk}_{i}_{c[:3]}.pts" for i, c in enumerate(cats)]
        with h5py.File(d / f"{chunk}.h5", "w") as f:
            f.create_dataset("data", data=data); f.create_dataset("label", data=label)
            if kind == "shapenetpart":
                seg = np.stack([rng.integers(SHAPENETPART_PART_START[c], SHAPENETPART_PART_START[c] + len(SHAPENETPART_PARTS[c]), 2048) for c in cats])
                f.create_dataset("seg", data=seg)
        if names: (d / f"{chunk}_id2name.json").write_text(json.dumps(cats))
        (d / f"{chunk}_id2file.json").write_text(json.dumps(files))
        for i, c in enumerate(cats):
            truth[f"{chunk}_{i}_{c[:3]}"] = dict(x=data[i], seg=seg[i] if kind == "shapenetpart" else None, split=chunk[:-1], cat=c)
    return d, truth


def write_shapenetpart(root, seed=0):
    "ShapeNetPart _normal: <synset>/<id>.txt rows 'x y z nx ny nz label' + train_test_split/shuffled_*_file_list.json."
    root = Path(root); rng = np.random.default_rng(seed); truth = {}
    for cat, mid, n in [("chair", "ch0", 2600), ("chair", "ch1", 900), ("table", "tb0", 2100), ("chair", "ch2", 2300)]:
        (root / SHAPENETPART_SYNSETS[cat]).mkdir(parents=True, exist_ok=True)
        xyz = rng.normal(size=(n, 3)) * [0.3, 0.4, 0.25] + [0.0, 0.05, 0.0]
        lab = rng.integers(SHAPENETPART_PART_START[cat], SHAPENETPART_PART_START[cat] + len(SHAPENETPART_PARTS[cat]), n)
        with open(root / SHAPENETPART_SYNSETS[cat] / f"{mid}.txt", "w") as f:
            for p, q in zip(xyz, lab): f.write(f"{p[0]:.6f} {p[1]:.6f} {p[2]:.6f} 0.000000 1.000000 0.000000 {q:.6f}\n")
        truth[mid] = (np.round(xyz, 6), lab)
    (root / "train_test_split").mkdir()
    sp = dict(train=["ch0", "tb0"], val=["ch1"], test=["ch2"])
    for s, mids in sp.items():
        (root / "train_test_split" / f"shuffled_{s}_file_list.json").write_text(
            json.dumps([f"shape_data/{SHAPENETPART_SYNSETS['table' if m.startswith('tb') else 'chair']}/{m}" for m in mids]))
    return root, truth


def pcd_text(X):
    n = len(X)
    head = f"VERSION .7\nFIELDS x y z rgb\nSIZE 4 4 4 4\nTYPE F F F U\nCOUNT 1 1 1 1\nWIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA ascii\n"
    return head + "".join(f"{x:.6f} {y:.6f} {z:.6f} 4278190080\n" for x, y, z in X)


def write_keypointnet(root, seed=0, n_pts=2048):
    "KeypointNet: annotations/<cat>.json + pcds/<synset>/<id>.pcd + splits/{train,val,test}.txt."
    root = Path(root); rng = np.random.default_rng(seed); syn = KEYPOINTNET_SYNSETS["chair"]
    for d in ("annotations", f"pcds/{syn}", "splits"): (root / d).mkdir(parents=True, exist_ok=True)
    models = {"m0": [0, 1, 2, 5], "m1": [1, 3], "m2": [0, 2, 3, 4, 5], "m3": [2]}
    anns, truth = [], {}
    for mid, sids in models.items():
        X = np.round(rng.uniform(-0.35, 0.45, (n_pts, 3)), 6)
        (root / "pcds" / syn / f"{mid}.pcd").write_text(pcd_text(X))
        idx = rng.choice(n_pts, len(sids), replace=False)
        anns.append({"class_id": syn, "model_id": mid, "symmetries": {},
                     "keypoints": [{"xyz": X[j].tolist(), "rgb": [1, 2, 3], "semantic_id": s, "pcd_info": {"point_index": int(j)},
                                    "mesh_info": {"face_index": 0, "face_uv": [0.1, 0.2, 0.7]}} for s, j in zip(sids, idx)]})
        truth[mid] = (X, {s: X[j] for s, j in zip(sids, idx)})
    (root / "annotations" / "chair.json").write_text(json.dumps(anns))
    for s, mids in dict(train=["m0", "m2"], val=["m1"], test=["m3"]).items():
        (root / "splits" / f"{s}.txt").write_text("02691156-aaaa\n" + "".join(f"{syn}-{m}\n" for m in mids))
    return root, truth


# ---------------------------------------------------------------- categories
def test_part_numbering():
    written = dict(airplane=(0, 3), bag=(4, 5), cap=(6, 7), car=(8, 11), chair=(12, 15), earphone=(16, 18), guitar=(19, 21),
                   knife=(22, 23), lamp=(24, 27), laptop=(28, 29), motorbike=(30, 35), mug=(36, 37), pistol=(38, 40),
                   rocket=(41, 43), skateboard=(44, 46), table=(47, 49))
    for c, (a, b) in written.items():
        fct.test_eq(SHAPENETPART_PART_START[c], a); fct.test_eq(len(SHAPENETPART_PARTS[c]), b - a + 1)
    fct.test_eq(global_to_local(np.arange(30, 36), "motor"), np.arange(6))
    fct.test_fail(lambda: global_to_local(np.array([29]), "motorbike", "f.txt"), contains="outside motorbike's range 30..35")


def test_namespace():
    import keypointdiffuser.data as D
    # ShapeSet methods are attached to the class, not exported as module functions (no clash with the synthetic module)
    assert not {"synthetic", "subset", "concat", "load_h5", "summary"} & set(D.__all__)
    assert callable(ShapeSet.synthetic) and ShapeSet.subset.__qualname__ == "ShapeSet.subset"


# ---------------------------------------------------------------- ShapeSet
def small_set(S=5, N=40, M=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(S, N, 3)).astype(np.float32)
    K = X[:, :M].copy(); pr = rng.random((S, M)) > 0.3; K[~pr] = np.nan
    return ShapeSet(X, rng.integers(-1, 2, (S, N)), K, pr, [f"s{i}" for i in range(S)], ["train", "train", "val", "test", "train"][:S],
                    "mug", ["handle", "body"], ["a", "b", "c"], dict(w=np.arange(S, dtype=np.float32), tag=np.array(list("vwxyz"[:S]))))


def test_shapeset_validation():
    X = np.zeros((2, 10, 3), np.float32); X[:, :, 0] = np.arange(10)
    bad = X.copy(); bad[1, 3, 2] = np.nan
    fct.test_fail(lambda: ShapeSet(bad, ids=["p", "q"]), contains="shape 'q' (index 1) has 1 NaN")
    bad = X.copy(); bad[0, 0, 0] = np.inf
    fct.test_fail(lambda: ShapeSet(bad), contains="1 inf")
    fct.test_fail(lambda: ShapeSet(X, np.full((2, 10), 2), part_names=["a", "b"]), contains="part ids must lie in -1..1")
    fct.test_fail(lambda: ShapeSet(X, np.full((2, 10), -2), part_names=["a", "b"]), contains="got range -2..-2")
    fct.test_fail(lambda: ShapeSet(X, np.zeros((2, 10)) + 0.5, part_names=["a"]), contains="parts must be integers")
    K = np.zeros((2, 2, 3)); K[0, 1] = np.nan
    fct.test_fail(lambda: ShapeSet(X, keypoints=K, present=np.ones((2, 2), bool)), contains="keypoint 1 is [nan, nan, nan]")
    fct.test_fail(lambda: ShapeSet(X, keypoints=K, present=np.ones((2, 3), bool)), contains="present must be (S, M) = (2, 2)")
    fct.test_fail(lambda: ShapeSet(X, keypoints=K, keypoint_names=["x"]), contains="keypoint_names has 1 names for M = 2")
    fct.test_fail(lambda: ShapeSet(X, ids=["a", "a"]), contains="ids must be unique")
    fct.test_fail(lambda: ShapeSet(X, split=["train", "dev"]), contains="split names must be in")
    fct.test_fail(lambda: ShapeSet(X, extra=dict(w=np.zeros(3))), contains="extra['w'] must have first axis S = 2")
    S = ShapeSet(X, keypoints=K)   # present derived from finiteness
    fct.test_eq(S.present, [[True, False], [True, True]]); fct.test_eq(S.parts, -np.ones((2, 10)))
    assert "ShapeSet(''" in repr(S) and "2 shapes × 10 points" in repr(S)


def test_h5_roundtrip_atomic_and_errors(tmp_path):
    S = small_set()
    f = S.save_h5(tmp_path / "sub" / "s.h5")
    T = ShapeSet.load_h5(f)
    for k in ("points", "parts", "present", "ids", "split"): fct.test_eq(getattr(T, k), getattr(S, k))
    nan_eq(T.keypoints, S.keypoints)
    fct.test_eq(T.extra["w"], S.extra["w"]); fct.test_eq(T.extra["tag"], S.extra["tag"])
    fct.test_eq((T.category, T.part_names, T.keypoint_names), (S.category, S.part_names, S.keypoint_names))
    fct.test_eq(sorted(p.name for p in f.parent.iterdir()), ["s.h5"])
    S.subset(idx=[0]).save_h5(f)                  # overwrite in place
    fct.test_eq(len(ShapeSet.load_h5(f)), 1)
    (tmp_path / "trunc.h5").write_bytes(f.read_bytes()[:500])
    fct.test_fail(lambda: ShapeSet.load_h5(tmp_path / "trunc.h5"), contains="trunc.h5 is not a readable HDF5 file")
    fct.test_fail(lambda: ShapeSet.load_h5(tmp_path / "missing.h5"), contains="missing.h5 does not exist")
    d, _ = write_antao97(tmp_path / "a")
    fct.test_fail(lambda: ShapeSet.load_h5(d / "train0.h5"), contains="looks like an antao97 file")
    shutil.copy(f, tmp_path / "nan.h5")            # a ShapeSet file whose points hold a NaN
    with h5py.File(tmp_path / "nan.h5", "r+") as g: g["points"][0, 0, 0] = np.nan
    fct.test_fail(lambda: ShapeSet.load_h5(tmp_path / "nan.h5"), contains="nan.h5: points must be finite")


def test_subset_concat_resample():
    S = small_set()
    fct.test_eq(S.subset("train").ids, ["s0", "s1", "s4"]); fct.test_eq(S.subset(idx=np.array([4, 2])).extra["tag"], ["z", "x"])
    fct.test_eq(S.subset(idx=S.extra["w"] > 2).ids, ["s3", "s4"])
    C = ShapeSet.concat([S.subset("train"), S.subset(["val", "test"])])
    fct.test_eq(sorted(C.ids), sorted(S.ids))
    fct.test_fail(lambda: ShapeSet.concat([]), contains="at least one")
    fct.test_fail(lambda: S.subset(split="dev"), contains="split names")
    R = S.resample(16, seed=3)
    for s in range(len(S)):
        j = cKDTree(S.points[s]).query(R.points[s])[1]
        fct.test_close(S.points[s][j], R.points[s]); fct.test_eq(R.parts[s], S.parts[s][j]); fct.test_eq(len(set(j)), 16)
    fct.test_eq(R.points, S.resample(16, seed=3).points)
    assert not np.array_equal(R.points, S.resample(16, seed=4).points)
    Nz = S.normalized()
    for s in range(len(S)):
        fct.test_close(Nz.points[s], box(S.points[s]), eps=1e-5)
        m, M = S.points[s].min(), S.points[s].max()
        nan_eq(np.round(Nz.keypoints[s], 4), np.round(2 * ((S.keypoints[s] - m) / (M - m) - 0.5), 4))


# ---------------------------------------------------------------- antao97 HDF5
def test_antao97_shapenetpart(tmp_path):
    d, truth = write_antao97(tmp_path)
    for root in (tmp_path, d):
        S = read_shapenet_hdf5(root, "chair")
        want = [k for k, v in truth.items() if v["cat"] == "chair"]
        fct.test_eq(list(S.ids), want)
        for i, k in enumerate(S.ids):
            fct.test_eq(S.parts[i], truth[k]["seg"] - 12); fct.test_eq(S.split[i], truth[k]["split"])
            fct.test_close(S.points[i], box(truth[k]["x"]), eps=1e-5)
    fct.test_eq(S.part_names, ["back", "seat", "leg", "arm"])
    A = read_shapenet_hdf5(d, "airplane", split="test", normalize=False)
    fct.test_eq(list(A.ids), ["test0_0_air"]); fct.test_eq(A.points[0], truth["test0_0_air"]["x"])
    fct.test_fail(lambda: read_shapenet_hdf5(d, "guitar"), contains="no 'guitar' shapes")
    fct.test_fail(lambda: read_shapenet_hdf5(d, "sofa"), contains="unknown category 'sofa'")
    fct.test_fail(lambda: read_shapenet_hdf5(tmp_path / "nothing", "chair"), contains="does not exist")
    # side files: wrong length, corrupt JSON
    keep = (d / "val0_id2name.json").read_text()
    (d / "val0_id2name.json").write_text(json.dumps(["chair", "chair"]))
    fct.test_fail(lambda: read_shapenet_hdf5(d, "chair"), contains="val0_id2name.json lists 2 names but val0.h5 holds 1 shapes")
    (d / "val0_id2name.json").write_text("[\"chai")
    fct.test_fail(lambda: read_shapenet_hdf5(d, "chair"), contains="val0_id2name.json is not valid JSON")
    (d / "val0_id2name.json").write_text(keep)
    # a chunk with NaN coordinates and one with a part id of another category
    with h5py.File(d / "train1.h5", "r+") as f: f["data"][1, 7, 0] = np.nan
    fct.test_fail(lambda: read_shapenet_hdf5(d, "chair"), contains="train1.h5 shape train1_1_cha: coordinates must be finite")
    with h5py.File(d / "train1.h5", "r+") as f: f["data"][1, 7, 0] = 0.0; f["seg"][1, 0] = 3
    fct.test_fail(lambda: read_shapenet_hdf5(d, "chair"), contains="global part ids [3] are outside chair's range 12..15")


def test_antao97_labels_and_corev2(tmp_path):
    d, truth = write_antao97(tmp_path / "p", names=False)        # no id2name: categories from the label index
    fct.test_eq(len(read_shapenet_hdf5(d, "chair")), sum(v["cat"] == "chair" for v in truth.values()))
    d2, truth2 = write_antao97(tmp_path / "c", kind="shapenetcorev2")
    S = read_shapenet_hdf5(tmp_path / "c", "airplane")
    fct.test_eq(S.part_names, []); fct.test_eq(S.parts.max(), -1)
    fct.test_eq(len(S), sum(v["cat"] == "airplane" for v in truth2.values()))
    (d2 / "train0_id2name.json").unlink()
    fct.test_fail(lambda: read_shapenet_hdf5(d2, "airplane"), contains="train0_id2name.json does not exist")


# ---------------------------------------------------------------- ShapeNetPart _normal
def test_shapenetpart_reader(tmp_path):
    root, truth = write_shapenetpart(tmp_path / "snp")
    S = read_shapenetpart(root, "chair", n_points=1024, normalize=False, seed=1)
    fct.test_eq(list(S.ids), ["ch0", "ch1", "ch2"]); fct.test_eq(list(S.split), ["train", "val", "test"])
    for i, mid in enumerate(S.ids):
        xyz, lab = truth[mid]
        d, j = cKDTree(xyz).query(S.points[i]); fct.test_close(d.max(), 0, eps=1e-5)
        fct.test_eq(S.parts[i], lab[j] - 12)
        fct.test_eq(len(np.unique(j)), min(len(xyz), 1024))    # ch1 (900 rows) keeps every row, plus repeats
    Sn = read_shapenetpart(root, "chair", n_points=1024, seed=1)
    for i in range(3): fct.test_close(Sn.points[i], box(S.points[i]), eps=1e-5)
    T = read_shapenetpart(root, "table", split="train", n_points=64)
    fct.test_eq(T.part_names, ["top", "leg", "support"]); fct.test_eq(T.points.shape, (1, 64, 3))
    fct.test_fail(lambda: read_shapenetpart(root, "chair", split="dev"), contains="split must be one of")
    fct.test_fail(lambda: read_shapenetpart(root, "bottle"), contains="unknown category 'bottle'")
    f = root / "03001627" / "ch2.txt"; good = f.read_text(); rows = good.splitlines()
    f.write_text("\n".join(rows[:3] + ["0.1 nan 0.2 0 1 0 13.000000"] + rows[4:]))
    fct.test_fail(lambda: read_shapenetpart(root, "chair", split="test"), contains="ch2.txt: coordinates must be finite; found 1 NaN")
    f.write_text("\n".join(rows[:3] + ["0.1 0.3 0.2 0 1 0 48.000000"] + rows[4:]))
    fct.test_fail(lambda: read_shapenetpart(root, "chair", split="test"), contains="ch2.txt: global part ids [48]")
    f.write_text("\n".join(rows[:3] + ["0.1 0.3 0.2 13.0"] + rows[4:]))
    fct.test_fail(lambda: read_shapenetpart(root, "chair", split="test"), contains="ch2.txt")
    f.unlink()
    fct.test_fail(lambda: read_shapenetpart(root, "chair", split="test"), contains="ch2.txt does not exist")
    (root / "train_test_split" / "shuffled_val_file_list.json").write_text("{oops")
    fct.test_fail(lambda: read_shapenetpart(root, "chair", split="val"), contains="shuffled_val_file_list.json is not valid JSON")


def test_shapenetpart_duplicates_across_splits(tmp_path):
    root, _ = write_shapenetpart(tmp_path / "snp")
    (root / "train_test_split" / "shuffled_test_file_list.json").write_text(json.dumps(["shape_data/03001627/ch2", "shape_data/03001627/ch0"]))
    with pytest.warns(UserWarning, match="listed in two ShapeNetPart splits"):
        S = read_shapenetpart(root, "chair", n_points=32)
    fct.test_eq(list(S.ids), ["ch0", "ch1", "ch2"]); fct.test_eq(list(S.split), ["train", "val", "test"])


# ---------------------------------------------------------------- KeypointNet
def test_keypointnet_reader(tmp_path):
    root, truth = write_keypointnet(tmp_path / "kpn")
    ann = read_keypointnet_annotations(root, "chair")
    fct.test_eq(ann.xyz.shape, (4, 6, 3))
    for i, mid in enumerate(ann.ids):
        fct.test_eq(set(np.flatnonzero(ann.present[i])), set(truth[mid][1]))
        for s, p in truth[mid][1].items(): fct.test_close(ann.xyz[i, s], p, eps=1e-6)
    assert read_keypointnet_annotations(ann, "chair") is ann
    S = read_keypointnet(root, "chair", normalize=False)
    fct.test_eq(list(S.ids), ["m0", "m1", "m2", "m3"]); fct.test_eq(list(S.split), ["train", "val", "train", "test"])
    fct.test_close(S.points[0], truth["m0"][0], eps=1e-6)
    fct.test_eq(S.parts.max(), -1); fct.test_eq(S.keypoint_names, [str(i) for i in range(6)])
    Sn = read_keypointnet(root, "chair", split="train")
    for i in range(len(Sn)):   # joint normalisation keeps keypoints on their points
        fct.test_close(cKDTree(Sn.points[i]).query(Sn.keypoints[i][Sn.present[i]])[0].max(), 0, eps=1e-5)
        fct.test_close(Sn.points[i], box(truth[Sn.ids[i]][0]), eps=1e-5)
    fct.test_eq(read_keypointnet(root, "chair", n_points=512).points.shape, (4, 512, 3))
    (root / "splits" / "test.txt").write_text("")   # m3 now in no split file
    with pytest.warns(UserWarning, match="1 chair model"):
        fct.test_eq(list(read_keypointnet(root, "chair").ids), ["m0", "m1", "m2"])


def test_keypointnet_bad_input(tmp_path):
    root, truth = write_keypointnet(tmp_path / "kpn")
    pc = root / "pcds" / "03001627"
    fct.test_fail(lambda: read_keypointnet(root, "airplane"), contains="airplane.json does not exist")
    fct.test_fail(lambda: read_keypointnet(root, "teapot"), contains="unknown category 'teapot'")
    shutil.copy(pc / "m1.pcd", tmp_path / "m1.bak"); shutil.copy(pc / "m2.pcd", pc / "m1.pcd")   # clouds of another model
    fct.test_fail(lambda: read_keypointnet(root, "chair", split="val"), contains="keypoints of model m1 do not lie on")
    shutil.copy(tmp_path / "m1.bak", pc / "m1.pcd")
    j = json.loads((root / "annotations" / "chair.json").read_text())
    j[1]["keypoints"][0]["pcd_info"]["point_index"] = 5000
    (root / "annotations" / "chair.json").write_text(json.dumps(j))
    fct.test_fail(lambda: read_keypointnet(root, "chair", split="val"), contains="model m1 has point_index 5000")
    (root / "annotations" / "chair.json").write_text(json.dumps(j)[:-40])
    fct.test_fail(lambda: read_keypointnet(root, "chair"), contains="chair.json is not valid JSON")
    (root / "annotations" / "chair.json").write_text(json.dumps([{"class_id": "03001627", "model_id": "m0"}]))
    fct.test_fail(lambda: read_keypointnet(root, "chair"), contains="entry 0 is not a KeypointNet annotation (missing 'keypoints')")
    root2, _ = write_keypointnet(tmp_path / "kpn2")
    (root2 / "pcds" / "03001627" / "m3.pcd").unlink()
    fct.test_fail(lambda: read_keypointnet(root2, "chair"), contains="m3.pcd does not exist")
    fct.test_eq(list(read_keypointnet(root2, "chair", missing="skip").ids), ["m0", "m1", "m2"])
    # PCD problems: truncated, binary
    txt = (root2 / "pcds" / "03001627" / "m0.pcd").read_text()
    (tmp_path / "t.pcd").write_text(txt[: len(txt) // 2].rsplit("\n", 1)[0] + "\n")
    fct.test_fail(lambda: read_pcd(tmp_path / "t.pcd"), contains="header says POINTS 2048 but the file has")
    (tmp_path / "b.pcd").write_text(txt.replace("DATA ascii", "DATA binary"))
    fct.test_fail(lambda: read_pcd(tmp_path / "b.pcd"), contains="only ascii PCD")
    (tmp_path / "n.pcd").write_text(txt.replace(txt.splitlines()[20], "nan 0.1 0.2 4278190080"))
    fct.test_fail(lambda: read_pcd(tmp_path / "n.pcd"), contains="n.pcd: coordinates must be finite")


def test_attach_keypoints(tmp_path):
    root, truth = write_keypointnet(tmp_path / "kpn")
    raw = read_keypointnet(root, "chair", normalize=False)
    s, t = np.float32(0.995), np.float32(-0.002)
    clouds = ShapeSet(keypointnet_to_shapenetpart(raw.points) * s + t, ids=raw.ids, split=raw.split, category="chair")
    got = attach_keypoints(clouds, root, init="identity", n_iter=10)
    for i, mid in enumerate(raw.ids):       # an independent rotation: the matrix of (x,y,z) -> (-z,y,x)
        R = np.array([[0, 0, -1], [0, 1, 0], [1, 0, 0]])
        want = np.full((6, 3), np.nan)
        for sid, p in truth[mid][1].items(): want[sid] = R @ p * s + t
        fct.test_close(np.nan_to_num(got.keypoints[i]), np.nan_to_num(want), eps=1e-4)
    fct.test_close(got.extra["kp_scale"][:3], s, eps=1e-4); fct.test_eq(got.extra["kp_scale"][3], 1.0)  # m3: one keypoint, shift only
    # normalising before or after attaching gives the same keypoints (the box start and ICP are equivariant)
    a = attach_keypoints(clouds, root).normalized(); b = attach_keypoints(clouds.normalized(), root)
    nan_eq(np.round(a.keypoints, 4), np.round(b.keypoints, 4))
    other = ShapeSet(clouds.points, ids=["x0", "x1", "x2", "x3"], category="chair")
    fct.test_fail(lambda: attach_keypoints(other, root), contains="does not match the clouds: none of its 4 model ids")
    fct.test_fail(lambda: attach_keypoints(ShapeSet(clouds.points, ids=raw.ids, category="table"), root), contains="table.json does not exist")
    fct.test_fail(lambda: attach_keypoints(clouds, root, frame="scannet"), contains="frame must be")


def test_fit_scale_translation_least_squares():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 3)); P = X[:9] * 1.02 + 0.01
    s, t = fit_scale_translation(P, X, n_iter=1, init="identity")
    Q = X[cKDTree(X).query(P)[1]]
    A = np.zeros((27, 4)); A[:, 0] = P.ravel(); A[np.arange(27), 1 + np.arange(27) % 3] = 1   # [s, tx, ty, tz]
    ref = np.linalg.lstsq(A, Q.ravel(), rcond=None)[0]
    fct.test_close(s, ref[0], eps=1e-6); fct.test_close(t, ref[1:], eps=1e-5)


# ---------------------------------------------------------------- entry point, dataset, loader
def test_load_dataset_and_layouts(tmp_path):
    a, _ = write_antao97(tmp_path / "a"); s, _ = write_shapenetpart(tmp_path / "s"); k, _ = write_keypointnet(tmp_path / "k")
    f = small_set().save_h5(tmp_path / "x.h5")
    fct.test_eq([detect_layout(p) for p in (tmp_path / "a", a, s, k, f)], ["antao97", "antao97", "shapenetpart", "keypointnet", "shapeset"])
    fct.test_fail(lambda: detect_layout(tmp_path), contains="cannot tell the layout")
    fct.test_eq(load_dataset(tmp_path / "a", "chair").n_points, 2048)
    fct.test_eq(load_dataset(s, "chair", n_points=100).points.shape, (3, 100, 3))
    fct.test_eq(len(load_dataset(k, "chair", n=2, seed=1)), 2)
    fct.test_eq(load_dataset(f).ids, small_set().ids)
    fct.test_fail(lambda: load_dataset(f, "cap"), contains="holds 'mug' shapes")
    fct.test_fail(lambda: load_dataset(s), contains="needs category=")
    # ShapeNetPart clouds with KeypointNet keypoints attached on the way in (ids do not overlap here)
    fct.test_fail(lambda: load_dataset(s, "chair", keypoints=k), contains="does not match the clouds")
    text = data_info(f)
    assert "5 shapes x 40 points" in text and "train 3, val 1, test 1" in text
    assert "parts (fraction of labelled points): handle" in text and "bounds: x [" in text


def test_dataset_and_loader():
    S = small_set(S=5, N=40)
    ds = ShapeDataset(S, n_points=10, seed=1)
    it = ds[2]
    fct.test_eq(set(it), {"points", "parts", "keypoints", "present", "index"})
    j = cKDTree(S.points[2]).query(it["points"].numpy())[1]
    fct.test_eq(it["parts"].numpy(), S.parts[2][j]); fct.test_eq(it["present"].numpy(), S.present[2])
    assert not torch.equal(ds[(2, 0)]["points"], ds[(2, 1)]["points"])
    fixed = ShapeDataset(S, n_points=10, seed=1, train=False)
    fct.test_eq(fixed[(2, 0)]["points"], fixed[(2, 7)]["points"])
    fct.test_eq(ShapeDataset(S)[0]["points"].numpy(), S.points[0])
    fct.test_fail(lambda: ShapeDataset(S, n_points=41), contains="n_points must be in 1..40")
    fct.test_fail(lambda: make_loader(S, 0), contains="batch_size")
    def epochs(**kw):
        dl = make_loader(S, batch_size=2, seed=3, n_points=8, **kw)
        return [[(b["index"].tolist(), b["points"].sum().item()) for b in dl] for _ in range(3)]
    e = epochs()
    fct.test_eq(e, epochs()); fct.test_eq([len(x) for x in e], [2, 2, 2])      # drop_last with shuffle: 2 full batches of 5
    assert e[0] != e[1]
    fct.test_eq(epochs(num_workers=2), e)                                    # workers do not change the draws
    ev = make_loader(S, batch_size=2, shuffle=False)
    fct.test_eq([b["index"].tolist() for b in ev], [[0, 1], [2, 3], [4]])
    b = next(iter(ev)); fct.test_eq(b["keypoints"].shape, (2, 3, 3)); fct.test_eq(b["points"].shape, (2, 40, 3))


# ---------------------------------------------------------------- synthetic data (needs keypointdiffuser.synthetic)
def test_synthetic_set_and_cache(tmp_path):
    syn = synthetic_or_skip()
    cat = syn.CATEGORIES[0]
    S = ShapeSet.synthetic(cat, n=20, n_points=256, seed=0)
    fct.test_eq(S.summary()["splits"], dict(train=16, val=2, test=2)); fct.test_eq(S.n_points, 256)
    fct.test_eq(len(set(S.ids)), 20)
    spec = syn.category_spec(cat)
    fct.test_eq(S.part_names, list(spec.part_names)); fct.test_eq(S.keypoint_names, list(spec.keypoint_names))
    tr, te = S.subset("train"), S.subset("test")
    assert cKDTree(tr.points[0]).query(te.points[0])[0].mean() > 1e-4   # distinct shapes across splits
    T = load_dataset("synthetic", cat, n=20, n_points=256, cache_dir=tmp_path)
    f = tmp_path / f"synthetic_{cat}_n20_p256_s0.h5"
    assert f.exists(); fct.test_eq(T.points, S.points)
    fct.test_eq(load_dataset("synthetic", cat, n=20, n_points=256, cache_dir=tmp_path).points, S.points)  # from the cache
    out = synth_to_h5(cat, 10, tmp_path / "x.h5", n_points=128, progress=False)
    fct.test_eq(ShapeSet.load_h5(out).points.shape, (10, 128, 3))
    assert f"'{cat}': 10 shapes x 128 points" in data_info(out)
    fct.test_fail(lambda: ShapeSet.synthetic("teapot", n=4), contains="unknown synthetic category 'teapot'")


# ---------------------------------------------------------------- the real samples in shared/data
def test_real_keypointnet(shared):
    ann = read_keypointnet_annotations(shared / "keypointnet", "chair")
    npz = read_keypointnet_annotations(shared / "keypointnet" / "chair_keypoints.npz")
    fct.test_eq(ann.ids, npz.ids); fct.test_eq(ann.present, npz.present); fct.test_eq(ann.point_index, npz.point_index)
    fct.test_close(np.nan_to_num(ann.xyz), np.nan_to_num(npz.xyz), eps=1e-6)
    fct.test_eq(ann.xyz.shape, (999, 21, 3)); fct.test_eq(int(ann.present.sum(1).min()), 8); fct.test_eq(int(ann.present.sum(1).max()), 17)
    S = read_keypointnet(shared / "keypointnet", "chair", missing="skip", normalize=False)
    fct.test_eq(list(S.ids), ["88382b877be91b2a572f8e1c1caad99e"])
    i = list(ann.ids).index(S.ids[0]); pr = ann.present[i]
    fct.test_close(S.points[0][ann.point_index[i][pr]], ann.xyz[i][pr], eps=5e-6)
    fct.test_eq(read_pcd(shared / "keypointnet" / "pcds" / "03001627" / "88382b877be91b2a572f8e1c1caad99e.pcd").shape, (2048, 3))


def test_real_chair_subset(shared):
    S = load_real_chair_subset(shared, normalize=False)
    R = load_real_chair_subset(shared, normalize=False, fit=False)
    u = S.extra["unbiased_sample"]
    fct.test_eq((len(S), S.n_points, S.n_keypoints), (125, 200, 21)); fct.test_eq(int(u.sum()), 116)
    fct.test_eq(S.summary()["splits"], dict(train=88, val=14, test=23))
    z = np.load(shared / "shapenetpart" / "real_subset_chair.npz")
    fct.test_eq(S.parts, z["part_label_local"]); fct.test_eq(S.ids, z["model_id"])
    d_rot, d_fit = np.median(S.extra["kp_dist_rot"][u]), np.median(S.extra["kp_dist_fit"][u])
    # README: ~0.083 -> ~0.039 with scale ~0.89; these fits measure 0.071 -> 0.031, scale 0.92
    assert 0.06 < d_rot < 0.09 and d_fit < 0.045 and d_fit < 0.6 * d_rot
    assert 0.85 < np.median(S.extra["kp_scale"][u]) < 0.97
    for i in (0, 50, 124):   # the stored distances, by brute force
        D = np.linalg.norm(S.keypoints[i][S.present[i]][:, None] - S.points[i][None], axis=-1).min(1)
        fct.test_close(np.median(D), S.extra["kp_dist_fit"][i], eps=1e-6)
    N = load_real_chair_subset(shared)
    fct.test_close(N.points.reshape(125, -1).min(1), -1, eps=1e-6); fct.test_close(N.points.reshape(125, -1).max(1), 1, eps=1e-6)
    nan_eq(np.round(N.keypoints, 4), np.round(S.normalized().keypoints, 4))


def test_real_raw_chair_fragment(shared, tmp_path):
    mid = "8b54af871a3ac77c492d9da2668ec34c"
    root = tmp_path / "snp"; (root / "03001627").mkdir(parents=True); (root / "train_test_split").mkdir()
    shutil.copy(shared / "shapenetpart" / "raw_fragments" / f"03001627_{mid}_first75rows.txt", root / "03001627" / f"{mid}.txt")
    for s in ("train", "val", "test"):
        (root / "train_test_split" / f"shuffled_{s}_file_list.json").write_text(json.dumps([f"shape_data/03001627/{mid}"] if s == "train" else []))
    S = read_shapenetpart(root, "chair", n_points=75, normalize=False, keypoints=shared / "keypointnet" / "annotations" / "chair.json")
    raw = np.loadtxt(root / "03001627" / f"{mid}.txt")
    fct.test_eq(S.points[0], raw[:, :3].astype(np.float32)); fct.test_eq(S.parts[0], raw[:, 6].astype(int) - 12)
    fct.test_eq(int(S.present.sum()), 17)
    d = cKDTree(S.points[0]).query(S.keypoints[0][S.present[0]])[0]
    # README (identity start): mean NN distance 0.052 after scale ~0.96; rotation alone 0.075
    assert 0.85 < S.extra["kp_scale"][0] < 1.0 and d.mean() < 0.06 and S.extra["kp_dist_rot"][0] > 0.07


def test_real_caps(shared):
    C = load_real_caps(shared)
    fct.test_eq((len(C), C.n_points, C.n_keypoints), (16, 2048, 0)); fct.test_eq(C.summary()["splits"], dict(train=0, val=5, test=11))
    z = np.load(shared / "shapenetpart" / "cap_gridsampled_torchpoints3d.npz")
    fct.test_eq(C.parts, z["part_label_local_2048"]); fct.test_eq(C.part_names, ["panels", "peak"])
    for i in (0, 15): fct.test_close(C.points[i], box(z["points_2048"][i]), eps=1e-5)
    F = load_real_caps(shared, n_points=1000, normalize=False)
    o = z["offsets"]
    for i in (0, 9):   # resampled from the full clouds, labels carried along
        j = cKDTree(z["points"][o[i]:o[i + 1]]).query(F.points[i])[1]
        fct.test_eq(F.parts[i], z["part_label_local"][o[i]:o[i + 1]][j])


def test_real_split_lists(shared, tmp_path):
    root = tmp_path / "snp"; shutil.copytree(shared / "shapenetpart" / "splits", root / "train_test_split")
    with pytest.warns(UserWarning, match="12 chair shape"):
        pairs = shapenetpart_split_ids(root, "chair")
    lists = {s: json.loads((root / "train_test_split" / f"shuffled_{s}_file_list.json").read_text()) for s in ("train", "val", "test")}
    want = len({e for v in lists.values() for e in v if e.split("/")[1] == "03001627"})
    fct.test_eq(len(pairs), want); fct.test_eq(len({m for m, _ in pairs}), want)
    fct.test_eq(len(shapenetpart_split_ids(root, "chair", "test")), sum(e.split("/")[1] == "03001627" for e in lists["test"]))
