"""Learning curves read back from a bundle run's TensorBoard logs.

Every bundle's trainer and validator write their scalars with MONAI's
``TensorBoardStatsHandler`` into ``output_dir`` (``<bundle_root>/eval``): the training loss per
iteration (``train_loss``) and the validation key metric per validated epoch
(``val_mean_dice``, its step is the trainer's epoch). Drivers that train many models in one
process (the A-Eval protocols) cannot tell the models apart in a shared console log; each
model's event files can.
"""

from __future__ import annotations

import os
from pathlib import Path

from medsegzoo.errors import DataValidationError


def tensorboard_scalars(log_dir: str | os.PathLike, tag: str) -> list[tuple[int, float]]:
    """``(step, value)`` of one scalar tag over every event file in ``log_dir``, by step.

    A run resumed from a checkpoint appends a new event file and may write a step again: the
    value written last wins.

    Args:
        log_dir: the folder of the event files (not searched recursively).
        tag: the scalar's tag, e.g. ``"val_mean_dice"``.

    Returns:
        The points sorted by step; empty when the folder's files never wrote ``tag``.

    Raises:
        DataValidationError: ``log_dir`` is not a folder, or holds no event file.
    """
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    folder = Path(log_dir)
    if not folder.is_dir():
        raise DataValidationError(f"{folder}: not a folder of TensorBoard event files")
    files = sorted(folder.glob("events.out.tfevents.*"), key=lambda p: (p.stat().st_mtime, p.name))
    if not files:
        raise DataValidationError(f"{folder}: no TensorBoard event file (events.out.tfevents.*) in it")
    points: dict[int, float] = {}
    for path in files:  # oldest first, so a resumed run's values replace the earlier ones
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag != tag:
                    continue
                # torch's SummaryWriter stores scalars as simple_value; newer writers as a tensor
                number = value.simple_value if value.HasField("simple_value") else _tensor_scalar(value.tensor)
                points[int(event.step)] = float(number)
    return sorted(points.items())


def _tensor_scalar(tensor: object) -> float:
    from tensorboard.util import tensor_util

    return float(tensor_util.make_ndarray(tensor).item())
