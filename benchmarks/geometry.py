"""Timings and peak memory of the geometry kernels (keypointdiffuser.geometry) against alternative implementations.

Chamfer (symmetric, forward + backward), kNN (k = 8, a cloud in itself), farthest point sampling (20 and 512
samples) and soft projection (K = 10 keypoints, forward + backward) at B = 16/32 clouds of 2,048/4,096 points.

    .venv/bin/python benchmarks/geometry.py            # all sizes (a few minutes on 2 CPU cores)
    .venv/bin/python benchmarks/geometry.py --quick    # B = 16 x 2,048 only
    .venv/bin/python benchmarks/geometry.py --device cuda

On a shared machine whose cores are busy, add `--threads 1`: torch's OpenMP threads stall when the cores are
oversubscribed (the header prints the load average), which can slow the small per-step ops of the FPS loop 100x.

Each case runs in a fresh process: one warm-up call, then the median of `--repeats` timed calls. "extra
memory" is the growth of the process's peak resident memory over the inputs (CPU), or the peak CUDA allocation
minus the inputs (GPU).
"""
from __future__ import annotations
import argparse, math, multiprocessing as mp, os, resource, statistics, sys, time

import numpy as np
import torch

from keypointdiffuser.geometry import (chamfer, farthest_point_sampling, gather_points, knn, soft_project, sqdist)


# ---------------------------------------------------------------- alternative implementations (references)
def chamfer_dense_baddbmm(a, b):
    "Whole (B, Na, Nb) squared-distance matrix by baddbmm, min both ways, autograd through min."
    D = sqdist(a, b)
    return D.min(2).values.mean(1) + D.min(1).values.mean(1)

def chamfer_dense_cdist(a, b):
    "torch.cdist (B, Na, Nb), squared, min both ways."
    D = torch.cdist(a, b) ** 2
    return D.min(2).values.mean(1) + D.min(1).values.mean(1)

def knn_dense_cdist(x, k):
    D = torch.cdist(x, x) ** 2
    D.diagonal(dim1=1, dim2=2).fill_(math.inf)
    return D.topk(k, -1, largest=False)

def fps_numpy(x, n):
    "Farthest point sampling with a numpy loop over samples (start at index 0)."
    X = x.cpu().numpy(); B, N, _ = X.shape
    idx = np.zeros((B, n), np.int64); d = np.full((B, N), np.inf, X.dtype); s = np.zeros(B, np.int64); r = np.arange(B)
    for t in range(n):
        idx[:, t] = s
        d = np.minimum(d, ((X - X[r, s][:, None]) ** 2).sum(-1)); s = d.argmax(1)
    return idx

def soft_project_cdist(P, X, tau):
    return torch.bmm((-(torch.cdist(P, X) ** 2) / tau).softmax(-1), X)

def soft_project_diff(P, X, tau):
    "Explicit differences: a (B, K, N, 3) intermediate."
    return torch.bmm((-((P[:, :, None] - X[:, None]) ** 2).sum(-1) / tau).softmax(-1), X)


# ---------------------------------------------------------------- cases
def _cases():
    def fwd_bwd(f):
        def run(a, b):
            a = a.detach().requires_grad_(); b = b.detach().requires_grad_()
            f(a, b).sum().backward()
        return run
    K, tau = 10, 0.05
    return {
        "chamfer fwd+bwd": [
            ("kd-tree search + gather (auto on CPU)", fwd_bwd(lambda a, b: chamfer(a, b, backend="kdtree"))),
            ("chunked brute force + gather (auto on GPU)", fwd_bwd(lambda a, b: chamfer(a, b, backend="brute"))),
            ("dense baddbmm + min", fwd_bwd(chamfer_dense_baddbmm)),
            ("dense torch.cdist + min", fwd_bwd(chamfer_dense_cdist)),
        ],
        "knn k=8 (self)": [
            ("kd-tree", lambda a, b: knn(a, 8, backend="kdtree")),
            ("chunked brute force", lambda a, b: knn(a, 8, backend="brute")),
            ("dense torch.cdist + topk", lambda a, b: knn_dense_cdist(a, 8)),
        ],
        "fps n=20": [
            ("torch loop (ours)", lambda a, b: farthest_point_sampling(a, 20, start="first")),
            ("numpy loop", lambda a, b: fps_numpy(a, 20)),
        ],
        "fps n=512": [
            ("torch loop (ours)", lambda a, b: farthest_point_sampling(a, 512, start="first")),
            ("numpy loop", lambda a, b: fps_numpy(a, 512)),
        ],
        f"soft projection K={K} fwd+bwd": [
            ("baddbmm + softmax (ours)", fwd_bwd(lambda a, b: soft_project(a[:, :K], b, tau))),
            ("torch.cdist + softmax", fwd_bwd(lambda a, b: soft_project_cdist(a[:, :K], b, tau))),
            ("explicit differences (B,K,N,3)", fwd_bwd(lambda a, b: soft_project_diff(a[:, :K], b, tau))),
        ],
    }


def _peak_rss_bytes() -> int: return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

def _child(group, i, B, N, device, repeats, threads, q):
    try:
        if threads: torch.set_num_threads(threads)
        name, fn = _cases()[group][i]
        g = torch.Generator().manual_seed(0)
        a, b = torch.rand(B, N, 3, generator=g).to(device), torch.rand(B, N, 3, generator=g).to(device)
        cuda = device.startswith("cuda")
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        if cuda: torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
        else: base = _peak_rss_bytes()
        t0 = time.perf_counter(); fn(a, b); sync(); first = time.perf_counter() - t0
        reps = repeats if first < 2.0 else 1
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter(); fn(a, b); sync(); ts.append(time.perf_counter() - t0)
        peak = (torch.cuda.max_memory_allocated() if cuda else _peak_rss_bytes()) - base
        q.put((name, statistics.median(ts), len(ts), max(0, peak), None))
    except Exception as e:  # report, keep going
        q.put((name if "name" in dir() else "?", float("nan"), 0, 0, f"{type(e).__name__}: {e}"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only B = 16 x 2,048")
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per case (1 when a call takes > 2 s)")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    ap.add_argument("--only", default="", help="run only groups whose name contains this text")
    args = ap.parse_args(argv)
    sizes = [(16, 2048)] if args.quick else [(16, 2048), (32, 2048), (16, 4096), (32, 4096)]
    ctx = mp.get_context("spawn") # a fresh interpreter per case: no OpenMP/CUDA state inherited through fork
    dev = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {args.threads or os.cpu_count()} threads"
    print(f"# keypointdiffuser.geometry benchmark: torch {torch.__version__}, {dev}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    groups = [g for g in _cases() if args.only in g]
    for group in groups:
        print(f"## {group}\n")
        print(f"| implementation | {' | '.join(f'{B} x {N}' for B, N in sizes)} |")
        print("|---|" + "---|" * len(sizes))
        for i in range(len(_cases()[group])):
            cells = []
            for B, N in sizes:
                q = ctx.Queue(); p = ctx.Process(target=_child, args=(group, i, B, N, args.device, args.repeats, args.threads, q))
                p.start(); name, t, n, peak, err = q.get(); p.join()
                cells.append(f"error: {err}" if err else f"{t * 1e3:,.1f} ms, {peak / 2**20:,.0f} MiB")
            print(f"| {name} | {' | '.join(cells)} |", flush=True)
        print()
    print("cells: median time per call, extra peak memory over the inputs")


if __name__ == "__main__":
    main()
