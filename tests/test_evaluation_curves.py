"""Learning curves read back from TensorBoard event files (medsegzoo.evaluation.curves)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from torch.utils.tensorboard import SummaryWriter

from medsegzoo.errors import DataValidationError
from medsegzoo.evaluation.curves import tensorboard_scalars


def _write(folder: Path, points: list[tuple[int, float]], tag: str = "val_mean_dice") -> None:
    writer = SummaryWriter(log_dir=str(folder))
    for step, value in points:
        writer.add_scalar(tag, value, step)
        writer.add_scalar("train_loss", 1.0 - value, step)
    writer.close()


def test_reads_one_tag_in_step_order_and_a_resumed_run_overwrites(tmp_path: Path) -> None:
    _write(tmp_path, [(2, 0.25), (1, 0.125), (3, 0.5)])
    first = next(tmp_path.glob("events.out.tfevents.*"))
    os.utime(first, (time.time() - 60, time.time() - 60))  # the resumed run's file is the newer one
    _write(tmp_path, [(3, 0.75), (4, 0.875)])
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2
    assert tensorboard_scalars(tmp_path, "val_mean_dice") == [(1, 0.125), (2, 0.25), (3, 0.75), (4, 0.875)]
    assert tensorboard_scalars(tmp_path, "train_loss")[0] == (1, 0.875)
    assert tensorboard_scalars(tmp_path, "not_written") == []


def test_missing_folder_or_no_event_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="not a folder"):
        tensorboard_scalars(tmp_path / "absent", "val_mean_dice")
    with pytest.raises(DataValidationError, match=f"{tmp_path}: no TensorBoard event file"):
        tensorboard_scalars(tmp_path, "val_mean_dice")
