"""Generation speed of the synthetic data set (keypointdiffuser.synthetic): shapes per second for each category
at 2,048 points, split into building the primitives and sampling the points, and the time for 1,000 shapes x
2,048 points (the categories in turn) in one process and over two worker processes.

    .venv/bin/python benchmarks/synthetic.py            # 200 shapes per category, then the 1,000-shape figure
    .venv/bin/python benchmarks/synthetic.py --quick    # 50 shapes per category, 1,000-shape figure in one process

Wall-clock and CPU seconds are both printed: on a shared machine the wall clock also counts time the process
waited for a core, while CPU time is what the generator itself used. Generation is single-threaded numpy;
`--workers` splits the 1,000 shapes over processes (the shapes do not depend on how they are split).
"""
from __future__ import annotations
import argparse, os, time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from keypointdiffuser import synthetic as syn


def _timed(fn, *args):
    "Run fn(*args); return (result, wall seconds, CPU seconds of this process)."
    w, c = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - w, time.process_time() - c


def per_category(n: int, n_points: int = 2048):
    "Shapes/s per category, and the share of time spent building primitives vs sampling points."
    print(f"{'category':10s} {'shapes/s (wall)':>16s} {'shapes/s (CPU)':>15s} {'build ms':>9s} {'sample ms':>10s} {'primitives':>11s}")
    for c in syn.CATEGORIES:
        syn.make_shape(c, 0, n_points=n_points)  # warm-up
        _, wall, cpu = _timed(syn.generate, c, n, n_points)
        rngs = [syn._shape_rngs(c, "train", i, 0) for i in range(n)]
        t = time.process_time(); built = [syn._BUILDERS[c](g) for g, _ in rngs]; tb = time.process_time() - t
        t = time.process_time(); [syn.sample_surface(b[0], n_points, p) for b, (_, p) in zip(built, rngs)]; ts = time.process_time() - t
        n_prim = np.mean([len(b[0]) for b in built])
        print(f"{c:10s} {n / wall:16.0f} {n / cpu:15.0f} {1e3 * tb / n:9.2f} {1e3 * ts / n:10.2f} {n_prim:11.1f}")


def _chunk(args):
    "Generate shapes [start, start + n) of every category in turn (worker entry point)."
    start, n, n_points = args
    cats = syn.CATEGORIES
    for i in range(start, start + n): syn.make_shape(cats[i % len(cats)], i // len(cats), n_points=n_points)
    return n


def thousand(n_points: int = 2048, workers: int = 1, total: int = 1000):
    "Wall time for `total` shapes (categories in turn) with `workers` processes."
    if workers == 1:
        _, wall, cpu = _timed(_chunk, (0, total, n_points))
        print(f"{total} shapes x {n_points} points, 1 process: {wall:.2f} s wall, {cpu:.2f} s CPU ({total / wall:.0f} shapes/s)")
        return wall
    bounds = np.linspace(0, total, workers + 1).astype(int)
    with ProcessPoolExecutor(workers) as ex:
        list(ex.map(_chunk, [(0, 7, n_points)] * workers))  # start the workers, import the module
        w = time.perf_counter()
        done = sum(ex.map(_chunk, [(a, b - a, n_points) for a, b in zip(bounds[:-1], bounds[1:])]))
        wall = time.perf_counter() - w
    print(f"{done} shapes x {n_points} points, {workers} processes: {wall:.2f} s wall ({done / wall:.0f} shapes/s)")
    return wall


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="50 shapes per category and no multi-process run")
    ap.add_argument("--n", type=int, default=None, help="shapes per category for the per-category table")
    ap.add_argument("--workers", type=int, default=2, help="processes for the second 1,000-shape run")
    a = ap.parse_args()
    print(f"keypointdiffuser.synthetic on {os.cpu_count()} CPU cores (load average {os.getloadavg()[0]:.1f})")
    per_category(a.n or (50 if a.quick else 200))
    thousand(workers=1)
    if not a.quick and a.workers > 1: thousand(workers=a.workers)
