"""Atomic checkpoints and resume-from-latest on a tiny ignite training loop."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine, Events

from medsegzoo.engines.checkpoint import (
    AtomicCheckpointSaver,
    ResumeFromLatestCheckpoint,
    find_latest_checkpoint,
)
from medsegzoo.errors import MedSegZooError

EPOCH_LENGTH = 4
MAX_EPOCHS = 3


class _Crash(RuntimeError):
    pass


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    net = torch.nn.Linear(3, 1)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    data = [(torch.full((2, 3), float(i)), torch.full((2, 1), float(i % 3))) for i in range(EPOCH_LENGTH)]

    def step(engine: Engine, batch):
        x, y = batch
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(x), y)
        loss.backward()
        opt.step()
        sched.step()
        return loss.item()

    trainer = Engine(step)
    objects = {"network": net, "optimizer": opt, "lr_scheduler": sched, "trainer": trainer}
    return trainer, objects, data


def _attach(trainer, objects, ckpt_dir, crash_at: int | None = None):
    resume = ResumeFromLatestCheckpoint(ckpt_dir, objects)
    resume.attach(trainer)
    AtomicCheckpointSaver(
        save_dir=str(ckpt_dir), save_dict=objects, save_final=True, save_interval=2, epoch_level=False, n_saved=1
    ).attach(trainer)
    if crash_at is not None:

        @trainer.on(Events.ITERATION_COMPLETED(once=crash_at))
        def _crash(_):
            raise _Crash(f"simulated crash at iteration {crash_at}")

    return resume


def test_interrupted_run_resumes_iteration_optimizer_and_scheduler(tmp_path):
    # crashed run: the final checkpoint is written on the exception (iteration 7, mid-epoch 2)
    ckpt = tmp_path / "run"
    trainer, objects, data = _setup()
    _attach(trainer, objects, ckpt, crash_at=7)
    with pytest.raises(_Crash):
        trainer.run(data, max_epochs=MAX_EPOCHS)
    assert find_latest_checkpoint(ckpt, tuple(objects)).name.endswith("final_iteration=7.pt")

    # a fresh process: new objects with different initial weights, the same command again
    trainer, objects, data = _setup(seed=123)
    resume = _attach(trainer, objects, ckpt)
    seen: list[int] = []
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: seen.append(e.state.iteration))
    trainer.run(data, max_epochs=MAX_EPOCHS)
    assert resume.loaded_path is not None and resume.loaded_path.name.endswith("final_iteration=7.pt")
    # continued at iteration 8 (ITERATION_STARTED sees the counter already incremented)
    assert seen == list(range(8, MAX_EPOCHS * EPOCH_LENGTH + 1))
    assert trainer.state.iteration == MAX_EPOCHS * EPOCH_LENGTH
    # optimizer and scheduler state carried over: Adam's step count and StepLR's epoch
    opt_state = objects["optimizer"].state_dict()["state"]
    assert all(int(s["step"]) == MAX_EPOCHS * EPOCH_LENGTH for s in opt_state.values())
    assert objects["lr_scheduler"].last_epoch == MAX_EPOCHS * EPOCH_LENGTH
    assert objects["optimizer"].param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** (MAX_EPOCHS * EPOCH_LENGTH // 2))
    # mid-epoch, ignite restarts the data iterator (a list or a shuffling DataLoader has no
    # position to restore), so the weights are not bit-identical to the uninterrupted run's;
    # at epoch boundaries they are (next test)


def test_resume_is_exact_at_epoch_boundaries(tmp_path):
    trainer, objects, data = _setup()
    _attach(trainer, objects, tmp_path / "ref")
    trainer.run(data, max_epochs=MAX_EPOCHS)
    reference = {k: v.clone() for k, v in objects["network"].state_dict().items()}

    ckpt = tmp_path / "run"
    trainer, objects, data = _setup()
    _attach(trainer, objects, ckpt, crash_at=EPOCH_LENGTH)  # crash right after epoch 1
    with pytest.raises(_Crash):
        trainer.run(data, max_epochs=MAX_EPOCHS)
    trainer, objects, data = _setup(seed=5)
    _attach(trainer, objects, ckpt)
    trainer.run(data, max_epochs=MAX_EPOCHS)
    for key, value in objects["network"].state_dict().items():
        assert torch.allclose(value, reference[key], atol=1e-6), key


def test_no_checkpoint_starts_fresh_and_disabled_ignores_checkpoints(tmp_path):
    trainer, objects, data = _setup()
    resume = _attach(trainer, objects, tmp_path / "empty")
    trainer.run(data, max_epochs=1)
    assert resume.loaded_path is None and trainer.state.iteration == EPOCH_LENGTH
    # now a checkpoint exists; a disabled handler still starts from scratch
    trainer, objects, data = _setup()
    resume = ResumeFromLatestCheckpoint(tmp_path / "empty", objects, enabled=False)
    resume.attach(trainer)
    trainer.run(data, max_epochs=1)
    assert resume.loaded_path is None and trainer.state.iteration == EPOCH_LENGTH


def test_find_latest_skips_incomplete_and_broken_files(tmp_path):
    _, objects, _ = _setup()
    full = {k: v.state_dict() for k, v in objects.items()}
    full["trainer"] = {"iteration": 6, "epoch_length": 4, "max_epochs": 3}
    torch.save(full, tmp_path / "a_iteration=6.pt")
    full["trainer"] = {"iteration": 2, "epoch_length": 4, "max_epochs": 3}
    torch.save(full, tmp_path / "b_iteration=2.pt")  # newer file, earlier state
    torch.save({"network": full["network"]}, tmp_path / "key_metric=0.9.pt")  # network only
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    assert find_latest_checkpoint(tmp_path, tuple(objects)).name == "a_iteration=6.pt"
    assert find_latest_checkpoint(tmp_path, ("network",)).name == "a_iteration=6.pt"
    assert find_latest_checkpoint(tmp_path / "missing", ("network",)) is None


def test_checkpoint_of_another_network_fails_with_clear_error(tmp_path):
    trainer, objects, data = _setup()
    _attach(trainer, objects, tmp_path)
    trainer.run(data, max_epochs=1)
    other = torch.nn.Linear(4, 1)
    opt = torch.optim.Adam(other.parameters())
    trainer2 = Engine(lambda e, b: 0.0)
    handler = ResumeFromLatestCheckpoint(
        tmp_path, {"network": other, "optimizer": opt, "lr_scheduler": objects["lr_scheduler"], "trainer": trainer2}
    )
    handler.attach(trainer2)
    with pytest.raises(MedSegZooError, match="cannot resume from checkpoint"):
        trainer2.run(data, max_epochs=1)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    trainer, objects, data = _setup()
    saver = AtomicCheckpointSaver(save_dir=str(tmp_path), save_dict=objects, save_final=True)
    saver.attach(trainer)
    trainer.run(data, max_epochs=1)
    saved = sorted(p.name for p in tmp_path.iterdir())
    assert saved == ["checkpoint_final_iteration=4.pt"]
    before = (tmp_path / saved[0]).read_bytes()

    real_save = torch.save

    def dying_save(obj, f, *args, **kwargs):
        # write half a checkpoint, then die (a crash or a full disk while saving)
        real_save(obj, f, *args, **kwargs)
        f.seek(0)
        f.truncate(10)
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(OSError, match="disk full"):
        saver.completed(trainer)
    monkeypatch.setattr(torch, "save", real_save)
    # MONAI deletes the previous final file before writing the new one; what must never
    # exist is a truncated checkpoint under a checkpoint name or a leftover temporary file
    leftovers = [p for p in tmp_path.iterdir() if p.read_bytes() != before]
    assert leftovers == []
