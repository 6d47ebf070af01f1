"""Forward + backward time and peak memory of the keypoint encoder (keypointdiffuser.encoder) with its pure-PyTorch PTv3.

Cases, on synthetic chairs (B = 16 clouds):

- the `cpu` and `paper` encoder settings at 2,048 points;
- the target case: the `cpu` preset's encoder at 1,024 points (target: under 0.5 s per step on 2 CPU cores),
  beside the same encoder with dense attention (patch size = N: full N x N self-attention over each cloud at every
  stage instead of serialised patches), and a few variants of the `cpu` preset's backbone settings.

    .venv/bin/python benchmarks/encoder.py                 # CPU (and CUDA when available), a few minutes
    .venv/bin/python benchmarks/encoder.py --quick         # fewer repeats, no paper width on CPU
    .venv/bin/python benchmarks/encoder.py --threads 1     # torch threads (default 2)
    .venv/bin/python benchmarks/encoder.py --device cuda
    .venv/bin/python benchmarks/encoder.py --cases target  # only the 1,024-point cases

Each case runs in a fresh process: one warm-up step, then the median (and minimum) of `--repeats` timed steps.
A step is `enc(points)` in training mode and `backward()` of a scalar loss on the keypoints and the latent. "cpu s"
is the process CPU time per step (user + system, all threads); "extra MB" is the growth of the process's peak
resident memory over the model and inputs (CPU), or the peak CUDA allocation minus the model and inputs (GPU).
On a shared machine the wall times are inflated by other processes (the load average is printed with them);
run it under `nice -n -20` (as root) for figures close to an idle machine. `OMP_WAIT_POLICY=PASSIVE` keeps two
threads from spinning against each other when the cores are oversubscribed.
"""
from __future__ import annotations
import argparse, dataclasses, multiprocessing as mp, os, queue, resource, statistics, sys, time

import torch


def _case(spec: dict, q: mp.Queue):
    "Run one case in this (fresh) process and put its figures on the queue."
    torch.set_num_threads(spec["threads"])
    from keypointdiffuser.core import preset, seed_everything
    from keypointdiffuser.encoder import KeypointEncoder
    from keypointdiffuser.synthetic import generate
    seed_everything(0)
    dev = torch.device(spec["device"])
    cfg = dataclasses.replace(preset(spec["preset"]).encoder, **spec.get("override", {}))
    points = torch.from_numpy(generate("chair", spec["B"], n_points=spec["N"], seed=0)["points"]).to(dev)
    enc = KeypointEncoder.from_config(cfg).to(dev).train()
    n_params = sum(p.numel() for p in enc.parameters())

    def step():
        out = enc(points)
        (out.keypoints.square().mean() + out.mu.square().mean() + out.logvar.exp().mean()).backward()
        enc.zero_grad(set_to_none=True)
        if dev.type == "cuda": torch.cuda.synchronize()

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss # model and inputs built, no step run yet
    if dev.type == "cuda": torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
    step() # warm-up
    walls, cpus = [], []
    for _ in range(spec["repeats"]):
        t, c = time.perf_counter(), time.process_time()
        step()
        walls.append(time.perf_counter() - t); cpus.append(time.process_time() - c)
    if dev.type == "cuda": extra = (torch.cuda.max_memory_allocated() - base) / 2**20
    else: extra = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024 # KiB → MiB
    q.put(dict(wall=statistics.median(walls), wall_min=min(walls), cpu=statistics.median(cpus), extra_mb=extra,
               params=n_params, cfg=cfg))


def run_case(spec: dict) -> dict | None:
    "Run `_case` in a fresh process; None if that process died without a result."
    ctx = mp.get_context("spawn")
    q = ctx.Queue(); p = ctx.Process(target=_case, args=(spec, q)); p.start()
    res = None
    while res is None and (p.is_alive() or not q.empty()):
        try: res = q.get(timeout=1.0)
        except queue.Empty: pass
    p.join()
    if res is None: print(f"  case {spec} failed: its process exited with code {p.exitcode}", flush=True)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 timed steps per case; skip the paper width on CPU")
    ap.add_argument("--repeats", type=int, default=None, help="timed steps per case (default 3, 2 with --quick)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--device", choices=["cpu", "cuda", "all"], default="all", help="all = CPU, plus CUDA if available")
    ap.add_argument("--cases", choices=["all", "target"], default="all", help="target = only the 1,024-point cases")
    a = ap.parse_args(argv)
    reps = a.repeats or (2 if a.quick else 3)
    devices = ["cpu"] if a.device == "cpu" else ["cuda"] if a.device == "cuda" else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if "cuda" in devices and not torch.cuda.is_available(): sys.exit("--device cuda: CUDA is not available")

    rows = []
    def bench(label, device, preset_name, N, override=None, B=16):
        spec = dict(device=device, preset=preset_name, N=N, B=B, override=override or {}, repeats=reps, threads=a.threads)
        r = run_case(spec)
        if r is None: return None
        c = r["cfg"]
        desc = (f"ptv3 C={c.C} depths={c.depths} patch={c.patch_size} grid={c.grid_size}" if c.backbone == "ptv3"
                else f"{c.backbone} C={c.C}")
        load = os.getloadavg()[0]
        rows.append((label, device, f"{B}x{N}", desc, r))
        print(f"{label:<38} {device:<5} {B}x{N:<5} {desc:<49} {r['wall']:8.3f} {r['wall_min']:8.3f} {r['cpu']:8.3f} "
              f"{r['extra_mb']:9.0f} {r['params'] / 1e6:7.2f}   {load:4.1f}", flush=True)
        return r

    print(f"torch {torch.__version__}, {a.threads} CPU thread(s), {reps} timed steps per case, os.cpu_count() = {os.cpu_count()}")
    print(f"{'case':<38} {'dev':<5} {'B x N':<8} {'backbone':<49} {'wall s':>8} {'min s':>8} {'cpu s':>8} "
          f"{'extra MB':>9} {'Mparams':>7}   load")
    for dev in devices:
        if a.cases == "all":
            bench("cpu preset widths", dev, "cpu", 2048)
            if dev == "cuda" or not a.quick: bench("paper preset widths", dev, "paper", 2048)
        target = bench("TARGET cpu preset", dev, "cpu", 1024)
        dense = bench("  same, dense attention (P = N)", dev, "cpu", 1024, dict(patch_size=1024))
        if target and dense:
            print(f"  -> dense / patch attention: {dense['wall'] / target['wall']:.2f}x the time, "
                  f"{dense['extra_mb'] / max(target['extra_mb'], 1):.1f}x the extra memory"
                  + (f"; target 0.5 s {'met' if target['wall'] < 0.5 else 'NOT met'} (load {os.getloadavg()[0]:.1f} "
                     f"on {os.cpu_count()} cores)" if dev == "cpu" else ""))
        for label, ov in [("  variant grid 0.08", dict(grid_size=0.08)),
                          ("  variant patch 128", dict(patch_size=128)),
                          ("  variant C=32", dict(C=32)),
                          ("  variant 3 stages", dict(depths=(1, 1, 1))),
                          ("  variant C=32, 3 stages", dict(C=32, depths=(1, 1, 1))),
                          ("  variant C=32, 3 stages, grid 0.08", dict(C=32, depths=(1, 1, 1), grid_size=0.08))]:
            bench(label, dev, "cpu", 1024, ov)
        bench("  cpu preset at its N_enc = 512", dev, "cpu", 512)
        bench("  pointnet backbone", dev, "cpu", 1024, dict(backbone="pointnet"))


if __name__ == "__main__":
    main()
