"End-to-end tests of the trainer: exact resume after a pause, an exception, Ctrl-C, a time budget or a crash."
import json, os, random, signal, warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from keypointdiffuser.core import Config, TrainConfig, preset
from keypointdiffuser.train import (ToyClouds, ToyKeypointFit, Trainer, load_checkpoint, read_log, rng_state,
                                    steps_per_epoch, total_steps)


class Noisy(ToyKeypointFit):
    "The toy method drawing from all three global generators (torch, numpy, python) and recording what it sees."
    def __init__(self, **kw):
        super().__init__(**kw); self.seen = []

    def loss(self, batch, step):
        out = super().loss(batch, step)
        self.seen.append((step, batch["index"].tolist()))
        extra = 0.05 * (np.random.rand() + random.random())
        out["loss"] = out["loss"] * (1 + extra)
        out["extra"] = torch.tensor(extra)
        return out


class RaiseAt(Noisy):
    "Raises `exc` once, in the loss of step `at`, after the step's random draws."
    def __init__(self, at, exc=KeyboardInterrupt, **kw):
        super().__init__(**kw); self.at, self.exc, self.fired = at, exc, False

    def loss(self, batch, step):
        out = super().loss(batch, step)
        if step == self.at and not self.fired:
            self.fired = True; raise self.exc()
        return out


class SigintAt(Noisy):
    "Sends itself `n` SIGINTs (Ctrl-C) in the loss of step `at`."
    def __init__(self, at, n=1, **kw):
        super().__init__(**kw); self.at, self.n, self.fired = at, n, False

    def loss(self, batch, step):
        out = super().loss(batch, step)
        if step == self.at and not self.fired:
            self.fired = True
            for _ in range(self.n): os.kill(os.getpid(), signal.SIGINT)
        return out


class NaNAt(Noisy):
    def __init__(self, at, **kw):
        super().__init__(**kw); self.at = at

    def loss(self, batch, step):
        out = super().loss(batch, step)
        if step == self.at: out["loss"] = out["loss"] * float("nan")
        return out


def tcfg(**kw):
    "20 clouds, batch 4 × 2 accumulation: 3 steps per epoch, the last one short; EMA on."
    base = dict(lr=1e-2, batch_size=4, accum_steps=2, epochs=0, max_steps=14, grad_clip=1.0, ema=0.9,
                log_every=3, ckpt_every=5, seed=7)
    return TrainConfig(**{**base, **kw})


def trainer(out, cls=Noisy, cfg=None, init_seed=0, **kw):
    "A trainer on a freshly initialised method (weights from `init_seed`)."
    mkw = {k: kw.pop(k) for k in ("at", "n", "exc") if k in kw}
    torch.manual_seed(init_seed)
    return Trainer(cls(K=6, **mkw), ToyClouds(20, 48), out, cfg or tcfg(), progress=False, **kw)


def assert_same(x, y, path="ckpt"):
    "Bit-for-bit equality of two checkpoint trees (ignoring wall-clock time)."
    if isinstance(x, dict):
        assert set(x) == set(y), (path, set(x) ^ set(y))
        for k in x:
            if k != "elapsed": assert_same(x[k], y[k], f"{path}.{k}")
    elif isinstance(x, (list, tuple)):
        assert len(x) == len(y), path
        for i, (a, b) in enumerate(zip(x, y)): assert_same(a, b, f"{path}[{i}]")
    elif isinstance(x, torch.Tensor): assert torch.equal(x, y), path
    else: assert x == y or (x != x and y != y), (path, x, y)


def assert_same_run(a: Path, b: Path):
    "Two run folders hold the same final checkpoint and the same log, to the bit."
    assert_same(load_checkpoint(a), load_checkpoint(b))
    la, lb = read_log(a), read_log(b)
    assert len(la) > 0
    pd.testing.assert_frame_equal(la.drop(columns="time"), lb.drop(columns="time"), check_exact=True)
    terms = ["loss", "cd_px", "cd_xp", "extra", "grad_norm"]
    assert torch.equal(torch.tensor(la[terms].values), torch.tensor(lb[terms].values))


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    "The uninterrupted 14-step run every interrupted one is compared with."
    out = tmp_path_factory.mktemp("straight")
    tr = trainer(out)
    s = tr.fit()
    assert (s["step"], s["stopped_reason"], s["steps_this_call"]) == (14, "done", 14)
    return out


def test_resume_after_pause_is_exact(straight, tmp_path):
    s = trainer(tmp_path).fit(pause_at=4)
    assert (s["step"], s["stopped_reason"]) == (4, "paused")
    assert load_checkpoint(tmp_path)["step"] == 4
    # a new trainer on a differently initialised method, after the global generators moved on
    np.random.seed(99); random.seed(99)
    tr = trainer(tmp_path, init_seed=123)
    assert tr.step == 4
    s = tr.fit()
    assert (s["step"], s["steps_this_call"], s["stopped_reason"]) == (14, 10, "done")
    assert_same_run(straight, tmp_path)


def test_two_pauses_on_one_object(straight, tmp_path):
    tr = trainer(tmp_path)
    assert tr.fit(pause_at=5)["stopped_reason"] == "paused"
    assert tr.fit(pause_at=9)["step"] == 9
    assert tr.fit()["stopped_reason"] == "done"
    assert_same_run(straight, tmp_path)
    assert tr.fit()["steps_this_call"] == 0  # nothing left to do


def test_keyboard_interrupt_in_loss(straight, tmp_path):
    tr = trainer(tmp_path, cls=RaiseAt, at=6)
    s = tr.fit()
    assert (s["step"], s["stopped_reason"]) == (6, "interrupted")  # step 6 was abandoned
    assert load_checkpoint(tmp_path)["step"] == 6
    assert all(p.grad is None for p in tr.params)
    s = trainer(tmp_path, init_seed=5).fit()
    assert (s["step"], s["stopped_reason"]) == (14, "done")
    assert_same_run(straight, tmp_path)


def test_ctrl_c_finishes_the_step(straight, tmp_path, capsys):
    before = signal.getsignal(signal.SIGINT)
    s = trainer(tmp_path, cls=SigintAt, at=7, n=1).fit()
    assert (s["step"], s["stopped_reason"]) == (8, "interrupted")  # step 7 completed, then stopped
    assert "stopping after step 8" in capsys.readouterr().out
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back
    trainer(tmp_path).fit()
    assert_same_run(straight, tmp_path)


def test_second_ctrl_c_abandons_the_step(straight, tmp_path):
    s = trainer(tmp_path, cls=SigintAt, at=7, n=2).fit()
    assert (s["step"], s["stopped_reason"]) == (7, "interrupted")
    trainer(tmp_path).fit()
    assert_same_run(straight, tmp_path)


def test_time_budget(straight, tmp_path):
    s = trainer(tmp_path).fit(max_minutes=1e-9)
    assert s["stopped_reason"] == "budget" and 0 < s["step"] < 14
    assert load_checkpoint(tmp_path)["step"] == s["step"]
    s2 = trainer(tmp_path).fit(max_minutes=1e-9)  # every call makes progress
    assert s2["stopped_reason"] == "budget" and s2["step"] > s["step"]
    assert trainer(tmp_path).fit()["stopped_reason"] == "done"
    assert_same_run(straight, tmp_path)


def test_nonfinite_loss_keeps_last_checkpoint_and_resumes(straight, tmp_path):
    tr = trainer(tmp_path, cls=NaNAt, at=13)
    with pytest.raises(FloatingPointError) as e:
        tr.fit()
    msg = str(e.value)
    assert "non-finite loss at step 13" in msg and "loss=nan (non-finite)" in msg
    assert "cd_px=" in msg and "extra=" in msg and "step 10" in msg
    assert load_checkpoint(tmp_path)["step"] == 10
    assert read_log(tmp_path).step.max() == 12  # a row after the checkpoint
    # a healthy method resumes from step 10: the log is cut back and the run is the uninterrupted one
    s = trainer(tmp_path).fit()
    assert s["stopped_reason"] == "done"
    assert_same_run(straight, tmp_path)


def test_nonfinite_before_any_checkpoint(tmp_path):
    with pytest.raises(FloatingPointError, match="no checkpoint was written yet"):
        trainer(tmp_path, cls=NaNAt, at=1).fit()
    assert not (tmp_path / "checkpoint.pt").exists()


def test_outputs_and_checkpoint_contents(straight):
    names = sorted(p.name for p in straight.iterdir())
    assert names == ["checkpoint.pt", "config.json", "log.csv", "losses.png"]
    assert (straight / "losses.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((straight / "config.json").read_text())["train"]["max_steps"] == 14
    log = read_log(straight)
    assert list(log.columns) == ["step", "epoch", "time", "lr", "loss", "cd_px", "cd_xp", "extra", "grad_norm"]
    assert log.step.tolist() == [3, 6, 9, 12, 14]  # every 3 steps, and the last partial interval
    assert log.epoch.tolist() == [round(s / 3, 4) for s in (3, 6, 9, 12, 14)]
    assert (log.lr == 1e-2).all() and log.time.is_monotonic_increasing
    ck = torch.load(straight / "checkpoint.pt", weights_only=True)  # loadable without trusting pickles
    for k in ("method", "optimizer", "ema", "scaler", "step", "epoch", "batch", "rng", "elapsed", "config", "total_steps"):
        assert k in ck, k
    assert (ck["step"], ck["epoch"], ck["batch"], ck["total_steps"]) == (14, 4, 2, 14)
    assert set(ck["rng"]) == {"python", "numpy", "torch", "cuda"}
    # load_checkpoint: EMA weights by default, raw on request, equal to the trainer's
    m = ToyKeypointFit(K=6)
    load_checkpoint(straight, m)
    assert torch.equal(m.P0, ck["ema"]["shadow"]["P0"]) and not torch.equal(m.P0, ck["method"]["P0"])
    load_checkpoint(straight, m, weights="raw")
    assert torch.equal(m.P0, ck["method"]["P0"])


def test_ema_method_context(tmp_path):
    tr = trainer(tmp_path, cfg=tcfg(max_steps=4))
    tr.fit()
    live = tr.method.P0.detach().clone()
    with tr.ema_method() as m:
        assert torch.equal(m.P0, tr.ema.shadow["P0"]) and not m.training
        kp = m.encode(ToyClouds(2, 48).points)
    assert kp.shape == (2, 6, 3)
    assert torch.equal(tr.method.P0, live) and tr.method.training


def test_config_json_from_config(tmp_path):
    cfg = tcfg(max_steps=2)
    trainer(tmp_path, cfg=cfg, config=preset("tiny")).fit()
    c = Config.from_json(tmp_path / "config.json")
    assert c.preset == "tiny" and c.train == cfg and c.encoder == preset("tiny").encoder
    assert trainer(tmp_path, cfg=cfg).step == 2  # resuming without a Config compares the train section only
    with pytest.raises(ValueError, match=r"encoder\.K: checkpoint 10, now 3"):
        trainer(tmp_path, cfg=cfg, config=preset("tiny").replace(**{"encoder.K": 3}))


def test_config_mismatch(tmp_path):
    trainer(tmp_path, cfg=tcfg(max_steps=4)).fit(pause_at=2)
    with pytest.raises(ValueError, match=r"train\.lr: checkpoint 0\.01, now 0\.001"):
        trainer(tmp_path, cfg=tcfg(max_steps=4, lr=1e-3))
    with pytest.warns(UserWarning, match="changed configuration"):
        tr = trainer(tmp_path, cfg=tcfg(max_steps=4, lr=1e-3), allow_config_change=True)
    assert tr.step == 2
    # the run's length, log and checkpoint intervals may change; a longer run warns about schedules
    tr = trainer(tmp_path, cfg=tcfg(max_steps=6, log_every=1, ckpt_every=2))
    with pytest.warns(UserWarning, match="length changed from 4 to 6"):
        assert tr.fit()["step"] == 6
    # resume=False starts over
    tr = trainer(tmp_path, cfg=tcfg(max_steps=4, lr=1e-3), resume=False)
    assert tr.step == 0 and not (tmp_path / "log.csv").exists()
    assert tr.fit()["step"] == 4 and read_log(tmp_path).step.tolist() == [3, 4]


def test_dataset_length_change_is_refused(tmp_path):
    trainer(tmp_path, cfg=tcfg(max_steps=2)).fit()
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="dataset length: checkpoint 20, now 21"):
        Trainer(Noisy(K=6), ToyClouds(21, 48), tmp_path, tcfg(max_steps=2), progress=False)


class EpochData(ToyClouds):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw); self.epochs = []
    def set_epoch(self, epoch): self.epochs.append(epoch)


class Recorder(Noisy):
    def set_total_steps(self, T):
        super().set_total_steps(T); self.T_seen = T


def test_epochs_total_steps_and_data_order(tmp_path):
    cfg = tcfg(epochs=3, max_steps=0, log_every=100)
    assert steps_per_epoch(20, 4, 2) == 3 and total_steps(cfg, 20) == 9
    torch.manual_seed(0)
    data, m = EpochData(20, 48), Recorder(K=6)
    s = Trainer(m, data, tmp_path, cfg, progress=False).fit()
    assert (s["step"], s["total_steps"], m.T_seen) == (9, 9, 9)
    assert data.epochs == [0, 1, 2]
    for e in range(3):  # every epoch visits every item once; micro-batches of 4, the last step short
        idx = [i for step, b in m.seen if step // 3 == e for i in b]
        assert sorted(idx) == list(range(20))
        assert [len(b) for step, b in m.seen if step // 3 == e] == [4, 4, 4, 4, 4]
    orders = [[i for step, b in m.seen if step // 3 == e for i in b] for e in range(3)]
    assert orders[0] != orders[1] != orders[2]
    # max_steps overrides the configuration
    torch.manual_seed(0)
    m2 = Recorder(K=6)
    assert Trainer(m2, ToyClouds(20, 48), tmp_path / "b", cfg, progress=False).fit(max_steps=4)["step"] == 4
    assert m2.T_seen == 4


def test_accumulation_matches_one_big_batch(tmp_path):
    torch.manual_seed(0)
    t2 = Trainer(ToyKeypointFit(K=6, sigma0=0.0), ToyClouds(20, 48), tmp_path / "a", tcfg(batch_size=4, accum_steps=2), progress=False)
    torch.manual_seed(0)
    t1 = Trainer(ToyKeypointFit(K=6, sigma0=0.0), ToyClouds(20, 48), tmp_path / "b", tcfg(batch_size=8, accum_steps=1), progress=False)
    for step in (0, 1, 2):  # two full steps and the short last step of the epoch
        terms2 = t2.backward(t2.step_batches(step), step)
        terms1 = t1.backward(t1.step_batches(step), step)
        for a, b in zip(t2.params, t1.params): torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7)
        assert abs(terms2["loss"] - terms1["loss"]) < 1e-6


def test_progress_bar_shows_terms(tmp_path, capsys):
    torch.manual_seed(0)
    Trainer(Noisy(K=6), ToyClouds(20, 48), tmp_path, tcfg(max_steps=3), progress=True).fit()
    err = capsys.readouterr().err
    assert "3/3" in err and "loss=" in err and "cd_px=" in err


def test_fp16_grad_scaler_path(tmp_path, monkeypatch):
    "The CUDA fp16 path (autocast + GradScaler, its state checkpointed and resumed), exercised on the CPU."
    monkeypatch.setattr(Trainer, "_amp_devices", ("cuda", "cpu"))
    cfg = tcfg(amp=True, max_steps=6)
    a = trainer(tmp_path / "a", cfg=cfg, amp_dtype="fp16")
    assert a.amp_dtype == torch.float16 and a.scaler is not None
    assert a.fit()["stopped_reason"] == "done"
    ck = load_checkpoint(tmp_path / "a")
    assert ck["scaler"] is not None and ck["scaler"]["scale"] > 0
    trainer(tmp_path / "b", cfg=cfg, amp_dtype="fp16").fit(pause_at=3)
    trainer(tmp_path / "b", cfg=cfg, amp_dtype="fp16").fit()
    assert_same_run(tmp_path / "a", tmp_path / "b")


def test_amp_is_a_no_op_on_cpu(tmp_path):
    tr = trainer(tmp_path, cfg=tcfg(amp=True), device="cpu")
    assert tr.amp_dtype is None and tr.scaler is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_cuda_amp(tmp_path, dtype):
    cfg = tcfg(amp=True, max_steps=8)
    a = trainer(tmp_path / "a", cfg=cfg, device="cuda", amp_dtype=dtype)
    assert a.amp_dtype in (torch.bfloat16, torch.float16)
    s = a.fit()
    assert s["stopped_reason"] == "done" and all(np.isfinite(v) for v in s["losses"].values())
    trainer(tmp_path / "b", cfg=cfg, device="cuda", amp_dtype=dtype).fit(pause_at=4)
    b = trainer(tmp_path / "b", cfg=cfg, device="cuda", amp_dtype=dtype)
    assert b.fit()["step"] == 8
    assert load_checkpoint(tmp_path / "b")["rng"]["cuda"] is not None


def test_bad_inputs(tmp_path):
    with pytest.raises(TypeError, match="must define loss"):
        Trainer(torch.nn.Linear(2, 2), ToyClouds(4, 8), tmp_path, tcfg())
    with pytest.raises(ValueError, match="non-empty"):
        Trainer(ToyKeypointFit(), [], tmp_path, tcfg())
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        Trainer(ToyKeypointFit(), ToyClouds(4, 8), tmp_path, tcfg(batch_size=0))
    with pytest.raises(ValueError, match="ema must lie in"):
        Trainer(ToyKeypointFit(), ToyClouds(4, 8), tmp_path, tcfg(ema=1.0))

    class NoDict(ToyKeypointFit):
        def loss(self, batch, step): return super().loss(batch, step)["loss"]
    with pytest.raises(TypeError, match="scalar tensor under 'loss'"):
        Trainer(NoDict(), ToyClouds(4, 8), tmp_path / "x", tcfg(), progress=False).fit()

    class Tuples(torch.utils.data.Dataset):
        def __len__(self): return 4
        def __getitem__(self, i): return torch.zeros(8, 3)
    with pytest.raises(TypeError, match="items must be dicts"):
        Trainer(ToyKeypointFit(), Tuples(), tmp_path / "y", tcfg(), progress=False).fit()
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nowhere")
