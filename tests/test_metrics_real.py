"""Real-data checks of the evaluation metrics (keypointdiffuser.metrics) on the shared ShapeNetPart / KeypointNet samples.

The samples live in `shared/data` beside the repository (`<repo>/../shared/data`) or wherever `$KPD_SHARED_DATA`
points; each test that needs a file skips with a message saying which file is missing.
"""
import inspect, os
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import cdist

import keypointdiffuser.metrics as M
from keypointdiffuser.core import normalize_box

CHAIR_IDS = [0, 1, 2, 3, 4, 5, 17, 18, 19, 20]  # the ten most annotated KeypointNet chair ids


def _data_dir() -> Path:
    env = os.environ.get("KPD_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _need(rel: str) -> Path:
    p = _data_dir() / rel
    if not p.exists(): pytest.skip(f"shared data file {p} not found (set KPD_SHARED_DATA or put shared/data beside the repo)")
    return p


@pytest.fixture(scope="module")
def kpn():
    z = np.load(_need("keypointnet/chair_keypoints.npz"))
    return z["xyz"].astype(np.float64), z["present"]


@pytest.fixture(scope="module")
def caps():
    z = np.load(_need("shapenetpart/cap_gridsampled_torchpoints3d.npz"))
    return normalize_box(z["points_2048"]).astype(np.float64), z["part_label_local_2048"].astype(np.int64), z


@pytest.fixture(scope="module")
def chairs200():
    z = np.load(_need("shapenetpart/real_subset_chair.npz"))
    return normalize_box(z["points"]).astype(np.float64), z["part_label_local"].astype(np.int64)


def _das_loop(P, Y, pr):
    "Literal transcription of Skeleton Merger's DAS: python loops over shapes, keypoints and ordered pairs."
    S, K = P.shape[:2]
    Mids = Y.shape[1]
    d = lambda s, k, m: ((P[s, k] - Y[s, m]) ** 2).sum()
    ids = [[min((m for m in range(Mids) if pr[s, m]), key=lambda m: d(s, k, m)) for k in range(K)] for s in range(S)]
    idx = [{m: min(range(K), key=lambda k: d(s, k, m)) for m in range(Mids) if pr[s, m]} for s in range(S)]
    fw = np.mean([np.mean([ids[i][k] == ids[j][k] for k in range(K)]) for i in range(S) for j in range(S)])
    per = []
    for m in range(Mids):
        sh = [s for s in range(S) if pr[s, m]]
        if sh: per.append(np.mean([idx[i][m] == idx[j][m] for i in sh for j in sh]))
    return (fw + np.mean(per)) / 2, fw, np.mean(per)


def test_public_api_signatures():
    "The names and argument orders other code relies on (no data needed)."
    sig = lambda f: list(inspect.signature(f).parameters)
    assert sig(M.keypoint_correlation)[:5] == ["pred", "points", "parts", "n_parts", "threshold"]
    assert sig(M.keypoint_part_matrix)[:5] == ["pred", "points", "parts", "n_parts", "threshold"]
    assert sig(M.dual_alignment_score) == ["pred", "gt", "present"]
    assert sig(M.das_components) == ["pred", "gt", "present"]
    assert sig(M.relaxed_dual_alignment_score) == ["pred", "gt", "present", "delta"]
    assert sig(M.chamfer_distance)[:2] == ["a", "b"] and sig(M.mmd_cd) == ["generated", "reference"]
    assert sig(M.earth_movers_distance)[:4] == ["a", "b", "method", "convention"]
    assert sig(M.reference_scores)[:6] == ["gt", "present", "points", "parts", "K", "seed"]
    assert inspect.signature(M.keypoint_correlation).parameters["threshold"].default == 0.05


# ---- DAS on 999 KeypointNet chairs ----------------------------------------------------------------------
def test_annotations_as_predictions_give_forward_das_one(kpn):
    "Each chair's own annotations of ids 0-5, 17-20 (K = 10, by id), on the 920 chairs that have all ten: forward = 1."
    Y, pr = kpn
    full = pr[:, CHAIR_IDS].all(1)
    assert full.sum() == 920
    das, fw, bw = M.das_components(Y[full][:, CHAIR_IDS], Y[full], pr[full])
    assert fw == 1.0
    assert 0.5 < bw < 1.0  # ids 6-16 must each pick one of the ten
    assert das == pytest.approx((1 + bw) / 2)
    # a relabelling applied consistently to every chair changes nothing
    perm = np.random.default_rng(0).permutation(10)
    assert M.das_components(Y[full][:, CHAIR_IDS][:, perm], Y[full], pr[full]) == pytest.approx((das, fw, bw), abs=1e-15)


def test_random_keypoints_score_chance(kpn):
    "Uniform random keypoints in each chair's keypoint box: forward DAS about 0.1."
    Y, pr = kpn
    Yn = np.where(pr[..., None], Y, np.nan)
    lo, hi = np.nanmin(Yn, 1), np.nanmax(Yn, 1)
    P = lo[:, None] + (hi - lo)[:, None] * np.random.default_rng(0).random((len(Y), 10, 3))
    das, fw, bw = M.das_components(P, Yn, pr)
    assert 0.05 < fw < 0.2 and 0.05 < bw < 0.2 and das < 0.2


def test_vectorised_das_matches_loop_on_real_chairs(kpn):
    "The count-based DAS equals the literal pairwise loop on 40 real chairs (with their absent ids) and noisy predictions."
    Y, pr = kpn
    Y, pr = Y[:40], pr[:40]
    rng = np.random.default_rng(1)
    P = np.nan_to_num(Y[:, CHAIR_IDS]) + rng.normal(0, 0.08, (40, 10, 3))
    assert M.das_components(P, Y, pr) == pytest.approx(_das_loop(P, np.nan_to_num(Y), pr), abs=1e-12)


def test_relaxed_das_on_real_chairs(kpn):
    "Relaxed DAS: δ = 0 is the strict score, and it never decreases with δ."
    Y, pr = kpn
    Y, pr = Y[:200], pr[:200]
    P = np.nan_to_num(Y[:, CHAIR_IDS]) + np.random.default_rng(2).normal(0, 0.05, (200, 10, 3))
    strict = M.das_components(P, Y, pr)
    assert M.relaxed_das_components(P, Y, pr, 0.0) == pytest.approx(strict, abs=1e-12)
    scores = [M.relaxed_dual_alignment_score(P, Y, pr, d) for d in (0.0, 0.1, 0.3, 1.0)]
    assert all(a <= b for a, b in zip(scores, scores[1:])) and scores[-1] > scores[0]


# ---- correlation on real ShapeNetPart clouds --------------------------------------------------------------
def _corr_loop(P, X, lab, L, r=0.05):
    "C (K, L) from per-shape scipy distance matrices (independent of the library's chunked expansion)."
    C = np.zeros((P.shape[1], L))
    for s in range(len(P)):
        D = cdist(P[s], X[s])  # (K, N)
        for l in range(L): C[:, l] += (D[:, lab[s] == l] <= r).any(1)
    C /= len(P)
    return C.max(1).mean(), C


def test_caps_correlation(caps):
    "16 real caps: one point of each part scores exactly 1; FPS keypoints lie between random points and 1; C matches a loop."
    X, lab, _ = caps
    rng = np.random.default_rng(0)
    on_part = np.stack([[X[s][rng.choice(np.flatnonzero(lab[s] == l))] for l in range(2)] for s in range(len(X))])
    assert M.keypoint_correlation(on_part, X, lab, n_parts=2) == 1.0
    fps = M.fps_keypoints(X, 10, seed=0)
    corr, C = M.keypoint_correlation(fps, X, lab, n_parts=2, return_matrix=True)
    ref, Cref = _corr_loop(fps, X, lab, 2)
    assert corr == pytest.approx(ref, abs=1e-12) and np.allclose(C, Cref)
    rand = M.keypoint_correlation(rng.uniform(-1, 1, (len(X), 10, 3)), X, lab, n_parts=2)
    assert rand < 0.2 < corr < 1.0


def test_real_chairs_correlation(chairs200):
    "125 real 200-point chairs: one point of each present part scores 1 (absent arms masked); FPS beats random points."
    X, lab = chairs200
    has = np.stack([(lab == l).any(1) for l in range(4)], 1)
    rng = np.random.default_rng(0)
    on_part = np.stack([[X[s][rng.choice(np.flatnonzero(lab[s] == l))] if has[s, l] else [np.nan] * 3 for l in range(4)] for s in range(len(X))])
    assert M.keypoint_correlation(on_part, X, lab, n_parts=4, present=has) == 1.0
    fps = M.fps_keypoints(X, 10, seed=0)
    corr = M.keypoint_correlation(fps, X, lab, n_parts=4)
    assert corr == pytest.approx(_corr_loop(fps, X, lab, 4)[0], abs=1e-12)
    assert M.keypoint_correlation(rng.uniform(-1, 1, (len(X), 10, 3)), X, lab, n_parts=4) < 0.1 < corr


def test_real_chairs_reference_scores():
    "Ceiling and floor on the real chairs with their KeypointNet keypoints in the ShapeNetPart frame."
    _need("shapenetpart/real_subset_chair.npz"); _need("keypointnet/chair_keypoints.npz")
    from keypointdiffuser.data import load_real_chair_subset
    S = load_real_chair_subset(_data_dir())
    ref = M.reference_scores(S.keypoints, S.present, S.points, S.parts, K=10, n_parts=4)
    assert ref["ceiling_ids"] == CHAIR_IDS
    assert ref["ceiling"]["forward"] == 1.0
    assert ref["ceiling"]["das"] > 0.8 > 0.2 > ref["floor"]["das"]
    assert 0 <= ref["ceiling"]["correlation"] <= 1 and 0 <= ref["floor"]["correlation"] <= 1


# ---- CD, EMD, MMD on real caps ----------------------------------------------------------------------------
def test_chamfer_and_mmd_on_caps(caps):
    X, _, _ = caps
    D = lambda a, b: ((a[:, None] - b[None]) ** 2).sum(-1)
    want = [D(a, b).min(1).mean() + D(a, b).min(0).mean() for a, b in zip(X[:3], X[3:6])]
    assert np.allclose(M.chamfer_distance(X[:3], X[3:6]), want, rtol=1e-10)
    assert np.allclose(M.chamfer_distance(X[:3], X[3:6]), M.chamfer_distance(X[3:6], X[:3]))
    assert M.mmd_cd(X, X) == 0.0
    P = M.pairwise_chamfer(X[:4], X[4:7])
    assert M.mmd_cd(X[:4], X[4:7]) == pytest.approx(P.min(0).mean())


def test_emd_exact_and_approx_on_caps(caps):
    "Two independent 2,048-point samples of one real cap (the raw grid-sampled points), and two different caps."
    X, _, z = caps
    o = z["offsets"]
    full = z["points"][o[0]:o[1]].astype(np.float64)
    rng = np.random.default_rng(0)
    a = full[rng.choice(len(full), 2048, replace=False)]; b = full[rng.choice(len(full), 2048, replace=False)]
    A, B = normalize_box(np.stack([a, X[1]])), normalize_box(np.stack([b, X[2]]))
    ex = M.earth_movers_distance(A, B)
    ap = M.earth_movers_distance(A, B, method="approx")
    assert (ap >= ex - 1e-12).all() and (ap <= 1.05 * ex).all(), (ex, ap)
    assert M.earth_movers_distance(A, B, convention="paper") == pytest.approx(ex / 2048)
