"""Timings and accuracy of the evaluation metrics (keypointdiffuser.metrics).

Prints:
1. DAS (+ relaxed DAS) and keypoint-part correlation time for S shapes x 2,048 points x K = 10 (target < 2 s);
2. exact EMD time for one 2,048-point pair (target < 1.5 s);
3. approximate EMD on a batch of 2,048-point pairs: speed-up over exact and relative deviation
   (target >= 20x with mean deviation < 2 %).

Clouds are synthetic chairs (keypointdiffuser.synthetic). EMD pairs are of two kinds: two independent samples of
the same chair (as for a reconstruction) and two different chairs (as for generation).
Wall-clock and process CPU times are both printed: on a shared machine the CPU time is the steadier figure.

    .venv/bin/python benchmarks/metrics.py            # full sizes (about 2 minutes)
    .venv/bin/python benchmarks/metrics.py --quick    # smaller sizes, seconds
"""
import argparse, time

import numpy as np
import torch

from keypointdiffuser.metrics import _numba
from keypointdiffuser.metrics import (das_components, relaxed_das_components, keypoint_correlation, fps_keypoints,
                                      earth_movers_distance)
from keypointdiffuser.synthetic import generate, make_shape


def timed(f, repeats):
    "Median wall and CPU seconds of `repeats` calls of f, and f's last result."
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        out = f()
        walls.append(time.perf_counter() - w); cpus.append(time.process_time() - c)
    return float(np.median(walls)), float(np.median(cpus)), out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (200 shapes, 8 EMD pairs)")
    ap.add_argument("--shapes", type=int, default=None, help="shapes for DAS/correlation (default 1000)")
    ap.add_argument("--pairs", type=int, default=None, help="EMD pairs in the batch (default 32)")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of each DAS/correlation/EMD-pair timing (median)")
    args = ap.parse_args()
    S = args.shapes or (200 if args.quick else 1000)
    B = args.pairs or (8 if args.quick else 32)
    torch.set_num_threads(2)
    print(f"torch threads {torch.get_num_threads()}; S = {S} shapes, EMD batch {B} pairs of 2,048 points\n")

    # 1. DAS + correlation ------------------------------------------------------------------------------
    base = generate("chair", min(S, 100), n_points=2048, seed=0)
    reps = -(-S // len(base["points"]))
    rng = np.random.default_rng(0)
    X = np.tile(base["points"], (reps, 1, 1))[:S]
    X = X + rng.normal(0, 0.003, X.shape).astype(np.float32)  # distinct clouds, same statistics
    parts = np.tile(base["parts"], (reps, 1))[:S]
    Y = np.tile(base["keypoints"], (reps, 1, 1))[:S]; pr = np.tile(base["present"], (reps, 1))[:S]
    P = fps_keypoints(X, 10, seed=0)  # (S, 10, 3)
    w_das, c_das, das = timed(lambda: das_components(P, Y, pr), args.repeats)
    w_cor, c_cor, cor = timed(lambda: keypoint_correlation(P, X, parts, n_parts=4), args.repeats)
    w_rel, c_rel, rel = timed(lambda: relaxed_das_components(P, Y, pr, 0.1), args.repeats)
    print(f"[1] {S} shapes x 2,048 points, K = 10, M = {Y.shape[1]} ids (FPS keypoints on synthetic chairs)")
    print(f"    DAS                 {w_das:7.3f} s wall  {c_das:7.3f} s CPU   (DAS {das[0]:.3f})")
    print(f"    correlation         {w_cor:7.3f} s wall  {c_cor:7.3f} s CPU   (corr {cor:.3f})")
    print(f"    DAS + correlation   {w_das + w_cor:7.3f} s wall  {c_das + c_cor:7.3f} s CPU   target < 2 s")
    print(f"    relaxed DAS (δ=0.1) {w_rel:7.3f} s wall  {c_rel:7.3f} s CPU   (relaxed DAS {rel[0]:.3f})\n")

    # 2./3. EMD -----------------------------------------------------------------------------------------
    half = B // 2
    same_a, same_b, diff_a, diff_b = [], [], [], []
    for i in range(half):
        x = make_shape("chair", i, seed=1, n_points=4096)["points"][np.random.default_rng(i).permutation(4096)]
        same_a.append(x[:2048]); same_b.append(x[2048:])  # two independent samples of one chair
    for i in range(B - half):
        diff_a.append(make_shape("chair", 100 + 2 * i, seed=1)["points"]); diff_b.append(make_shape("chair", 101 + 2 * i, seed=1)["points"])
    A = np.stack(same_a + diff_a); Bc = np.stack(same_b + diff_b)  # (B, 2048, 3)
    kind = np.array(["same"] * half + ["different"] * (B - half))

    w1, c1, e1 = timed(lambda: earth_movers_distance(A[0], Bc[0]), args.repeats)
    print(f"[2] exact EMD, one 2,048-point pair (same chair): {w1:.3f} s wall  {c1:.3f} s CPU   target < 1.5 s  (EMD {e1:.4f})\n")

    w_ex, c_ex, ex = timed(lambda: earth_movers_distance(A, Bc, method="exact"), 1)
    w0, _, _ = timed(lambda: earth_movers_distance(A[:1], Bc[:1], method="approx"), 1)  # numba compiles (or loads its cache) once
    w_ap, c_ap, apx = timed(lambda: earth_movers_distance(A, Bc, method="approx"), args.repeats)
    dev = (apx - ex) / ex
    print(f"[3] batch of {B} pairs x 2,048 points ({half} same-chair, {B - half} different-chair)")
    print(f"    exact  {w_ex:7.2f} s wall  {c_ex:7.2f} s CPU")
    print(f"    approx {w_ap:7.2f} s wall  {c_ap:7.2f} s CPU   (median of {args.repeats}; first call {w0:.2f} s: {'numba compiles or loads its cache' if _numba else 'no numba: POT sparse simplex'})")
    print(f"    speed-up {w_ex / w_ap:5.1f}x wall  {c_ex / c_ap:5.1f}x CPU   target >= 20x")
    print(f"    relative deviation (approx - exact)/exact: mean {dev.mean():.4f}  max {dev.max():.4f}  min {dev.min():.4f}   target mean < 0.02")
    for k in ("same", "different"):
        m = kind == k
        if m.any(): print(f"      {k:9s} pairs: mean EMD {ex[m].mean():.4f}, mean deviation {dev[m].mean():.4f}, max {dev[m].max():.4f}")
    assert (dev >= -1e-9).all(), "the approximation is a bijection and can never be below the exact EMD"


if __name__ == "__main__":
    main()
