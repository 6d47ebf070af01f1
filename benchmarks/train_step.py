"""Training throughput of KeyPointDiffuser: optimiser steps per second, shapes per second and peak memory for the
`tiny`, `cpu` and (on a GPU) `paper` presets.

One optimiser step is one full `loss(batch, step)` (encoder twice for the deformation pair, soft projection, the
diffusion loss on the decoder) + backward + Adam, on synthetic chairs at the preset's sizes. Each preset runs in its
own process so that the peak memory (resident set size on CPU, `torch.cuda.max_memory_allocated` on a GPU) is its
own. The paper's own figure: 200 epochs of ShapeNet (about 2,300 chairs per epoch) in 12 h on an RTX 3090.

    .venv/bin/python benchmarks/train_step.py                  # tiny and cpu on the CPU (2 threads)
    .venv/bin/python benchmarks/train_step.py --presets paper --device cuda   # on a GPU
"""
import argparse, json, resource, subprocess, sys, time


def one(preset: str, device: str, steps: int, warmup: int, threads: int) -> dict:
    "Time `steps` optimiser steps of a preset (after `warmup` untimed ones) in this process."
    import numpy as np, torch
    from keypointdiffuser.core import preset as get_preset, seed_everything
    from keypointdiffuser.model import KeyPointDiffuser
    from keypointdiffuser.synthetic import generate
    torch.set_num_threads(threads)
    seed_everything(0)
    cfg = get_preset(preset)
    B, N = cfg.train.batch_size, cfg.data.N
    m = KeyPointDiffuser(cfg).to(device); m.set_total_steps(max(cfg.train.max_steps or 1000, 1000))
    opt = torch.optim.Adam(m.parameters(), lr=cfg.train.lr)
    X = torch.from_numpy(generate("chair", B, n_points=N, seed=0)["points"]).to(device)
    amp = device.startswith("cuda") and cfg.train.amp
    def step(s):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            out = m.loss({"points": X}, s)
        out["loss"].backward(); opt.step()
    for s in range(warmup): step(s)
    if device.startswith("cuda"): torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    times = []
    for s in range(steps):
        t = time.perf_counter(); step(warmup + s)
        if device.startswith("cuda"): torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    med = float(np.median(times))
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    accum = cfg.train.accum_steps
    return dict(preset=preset, device=device, batch=B, N=N, N_enc=cfg.data.N_enc, params=sum(p.numel() for p in m.parameters()),
                step_s=med, shapes_per_s=B / med, peak_mb=peak, accum=accum, max_steps=cfg.train.max_steps)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default=None, help="comma-separated (default: tiny,cpu, plus paper on CUDA)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per preset (median)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(one(a.child, a.device, a.steps, a.warmup, a.threads))); return
    import torch
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    presets = a.presets.split(",") if a.presets else (["tiny", "cpu", "paper"] if device.startswith("cuda") else ["tiny", "cpu"])
    print(f"device {device}" + (f" ({torch.cuda.get_device_name()})" if device.startswith("cuda") else f", {a.threads} torch threads"))
    print(f"{'preset':<7}{'batch':>6}{'N':>6}{'N_enc':>6}{'params':>10}{'s/step':>9}{'shapes/s':>10}{'peak MB':>9}   run length")
    for p in presets:
        r = subprocess.run([sys.executable, __file__, "--child", p, "--device", device, "--steps", str(a.steps),
                            "--warmup", str(a.warmup), "--threads", str(a.threads)], capture_output=True, text=True)
        if r.returncode: print(f"{p:<7} failed:\n{r.stderr[-2000:]}"); continue
        d = json.loads(r.stdout.strip().splitlines()[-1])
        T = d["max_steps"] or 0
        run = f"{T} steps ≈ {T * d['step_s'] / 60:.1f} min" if T else ""
        print(f"{p:<7}{d['batch']:>6}{d['N']:>6}{d['N_enc']:>6}{d['params']:>10,}{d['step_s']:>9.3f}{d['shapes_per_s']:>10.1f}{d['peak_mb']:>9.0f}   {run}")
    print("\npaper's figure: 200 epochs x ~2,300 ShapeNet chairs in 12 h on an RTX 3090 = about 10.6 shapes/s")


if __name__ == "__main__":
    main()
