"""Atomic checkpoints and resuming a crashed training run from the latest one.

Every bundle trains with MONAI's :class:`~monai.handlers.CheckpointSaver` and ignite; two gaps
are filled here:

* MONAI's saver writes checkpoints in place (it builds ignite's ``DiskSaver`` with
  ``atomic=False`` because older ignite versions left atomic files readable by the owner only;
  ignite 0.5 adds group/other read permission after the rename). A run killed while writing
  would leave a truncated ``.pt`` that the next start cannot load.
  :class:`AtomicCheckpointSaver` is MONAI's saver with ignite's atomic writes switched back on.
* MONAI's :class:`~monai.handlers.CheckpointLoader` loads one named file.
  :class:`ResumeFromLatestCheckpoint` finds the newest complete checkpoint in a folder (one
  that holds every object to restore: network, optimizer, lr scheduler, trainer) and loads it
  with :class:`~monai.handlers.CheckpointLoader` when the trainer starts, so that starting the
  same command again continues at the saved iteration with the saved optimizer and scheduler
  state; with no checkpoint it starts fresh.

Bundle config sketch (``train.json``)::

    "save_dict": {"network": "@network", "optimizer": "@optimizer",
                  "lr_scheduler": "@lr_scheduler", "trainer": "@trainer"},
    {"_target_": "medsegzoo.engines.checkpoint.ResumeFromLatestCheckpoint",
     "ckpt_dir": "@ckpt_dir", "load_dict": "@save_dict", "map_location": "@device",
     "enabled": "@resume"},
    {"_target_": "medsegzoo.engines.checkpoint.AtomicCheckpointSaver",
     "save_dir": "@ckpt_dir", "save_dict": "@save_dict", "save_final": true,
     "save_interval": 1, "n_saved": 1}
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import DiskSaver
from monai.handlers import CheckpointLoader, CheckpointSaver

from medsegzoo.errors import MedSegZooError
from medsegzoo.networks.weights import load_weights
from medsegzoo.utils.atomic import atomic_path

__all__ = [
    "AtomicCheckpointSaver",
    "AtomicDiskSaver",
    "InferenceWeights",
    "SaveInferenceWeights",
    "StrictCheckpointLoader",
    "ResumeFromLatestCheckpoint",
    "find_latest_checkpoint",
]

logger = logging.getLogger(__name__)


class AtomicDiskSaver(DiskSaver):
    """ignite ``DiskSaver`` that writes through a temporary file and a rename.

    Args:
        dirname: folder of the checkpoints.
        filename: a fixed file name (MONAI's ``final_filename`` / ``key_metric_filename``); None
            keeps the name ignite's ``Checkpoint`` chooses.
    """

    def __init__(self, dirname: str | os.PathLike, filename: str | None = None) -> None:
        super().__init__(dirname=str(dirname), require_empty=False, atomic=True)
        self.filename = filename

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        super().__call__(checkpoint, self.filename or filename, metadata)

    def remove(self, filename: str) -> None:
        super().remove(self.filename or filename)


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI :class:`~monai.handlers.CheckpointSaver` whose files are written atomically.

    Takes exactly the arguments of MONAI's saver. A crash while a checkpoint is written leaves
    the previous checkpoint intact and no partial ``.pt`` file.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # MONAI builds its in-place savers inside __init__; swap each for an atomic one that
        # keeps the same fixed file name (the only state they carry)
        for ckpt in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if ckpt is not None:
                ckpt.save_handler = AtomicDiskSaver(self.save_dir, getattr(ckpt.save_handler, "filename", None))


def _trainer_iteration(checkpoint: Mapping[str, Any], trainer_key: str) -> int:
    state = checkpoint.get(trainer_key)
    if isinstance(state, Mapping):
        if "iteration" in state:
            return int(state["iteration"])
        if "epoch" in state and "epoch_length" in state:
            return int(state["epoch"]) * int(state["epoch_length"])
    return -1


def find_latest_checkpoint(
    ckpt_dir: str | os.PathLike,
    required_keys: tuple[str, ...] | list[str] = (),
    pattern: str = "*.pt",
    trainer_key: str = "trainer",
) -> Path | None:
    """The checkpoint in ``ckpt_dir`` that continues a run furthest.

    Only files that load and hold every key of ``required_keys`` count (a key-metric file with
    the network alone cannot resume a run). Among them the highest saved trainer iteration wins,
    then the newest modification time. Files that do not load (foreign or damaged) are skipped
    with a warning.

    Args:
        ckpt_dir: folder to search (need not exist).
        required_keys: keys every usable checkpoint must contain.
        pattern: glob of checkpoint files.
        trainer_key: key of the trainer's ignite state in the checkpoint.

    Returns:
        The path, or None when there is no usable checkpoint.
    """
    folder = Path(ckpt_dir)
    if not folder.is_dir():
        return None
    best: tuple[int, float] | None = None
    best_path: Path | None = None
    for path in folder.glob(pattern):
        if not path.is_file():
            continue
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unreadable file is skipped, not fatal
            logger.warning("skipping checkpoint %s: cannot be loaded (%s)", path, err)
            continue
        if not isinstance(checkpoint, Mapping) or any(k not in checkpoint for k in required_keys):
            continue
        rank = (_trainer_iteration(checkpoint, trainer_key), path.stat().st_mtime)
        if best is None or rank > best:
            best, best_path = rank, path
        del checkpoint
    return best_path


class ResumeFromLatestCheckpoint:
    """Restore network, optimizer, scheduler and trainer from the newest checkpoint at start.

    Attach it to the trainer (a MONAI bundle lists it first among ``train#handlers``). When the
    trainer starts, the checkpoint found by :func:`find_latest_checkpoint` in ``ckpt_dir`` is
    loaded into every object of ``load_dict`` with MONAI's
    :class:`~monai.handlers.CheckpointLoader` (which keeps the configured ``max_epochs``), and
    ignite continues at the saved iteration (mid-epoch included). With no checkpoint the
    run starts fresh.

    Args:
        ckpt_dir: folder of the run's checkpoints.
        load_dict: objects to restore, e.g. ``{"network": net, "optimizer": opt,
            "lr_scheduler": sched, "trainer": trainer}`` (the saver's ``save_dict``).
        map_location: where tensors are loaded (the run's device).
        strict: strict state-dict loading (a checkpoint of another configuration fails loudly).
        enabled: False turns the handler into a no-op (a config switch ``resume``).
        name: logger name.

    Attributes:
        loaded_path: the checkpoint restored at the last start, or None.

    Raises:
        MedSegZooError: (when the trainer starts) the latest checkpoint does not fit the
            objects to restore, e.g. it was written by a different network configuration.
    """

    def __init__(
        self,
        ckpt_dir: str | os.PathLike,
        load_dict: Mapping[str, Any],
        map_location: Any = None,
        strict: bool = True,
        enabled: bool = True,
        name: str | None = None,
    ) -> None:
        if not load_dict:
            raise MedSegZooError("ResumeFromLatestCheckpoint: load_dict is empty, nothing to restore")
        self.ckpt_dir = Path(ckpt_dir)
        self.load_dict = dict(load_dict)
        self.map_location = map_location
        self.strict = strict
        self.enabled = enabled
        self.logger = logging.getLogger(name or __name__)
        self.loaded_path: Path | None = None

    def attach(self, engine: Engine) -> None:
        """Run at ``Events.STARTED`` of ``engine``."""
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        """Find and load the latest checkpoint (no-op when disabled or none exists)."""
        self.loaded_path = None
        if not self.enabled:
            return
        path = find_latest_checkpoint(self.ckpt_dir, tuple(self.load_dict))
        if path is None:
            self.logger.info("no checkpoint to resume in %s; training starts from scratch", self.ckpt_dir)
            return
        map_location = self.map_location
        if isinstance(map_location, torch.device):
            map_location = str(map_location)
        loader = CheckpointLoader(
            load_path=str(path), load_dict=self.load_dict, map_location=map_location, strict=self.strict
        )
        loader.logger = self.logger
        try:
            loader(engine)
        except (RuntimeError, KeyError, ValueError) as err:
            raise MedSegZooError(
                f"cannot resume from checkpoint {path}: {err}. Remove the folder {self.ckpt_dir} (or set "
                "resume to false) to train from scratch."
            ) from err
        self.loaded_path = path
        self.logger.info("resumed from %s at iteration %d (epoch %d)", path, engine.state.iteration, engine.state.epoch)


class StrictCheckpointLoader:
    """Load inference weights into a network when an engine starts; any mismatch is an error.

    MONAI's ``CheckpointLoader(strict=False)`` keeps the random value of every tensor it cannot
    match. This handler loads through :func:`medsegzoo.networks.weights.load_weights`: a missing,
    unexpected or differently shaped tensor stops the run with the file and every key named.

    Args:
        load_path: checkpoint file (a state dict, or a dict holding it under ``network`` /
            ``model`` / ``state_dict``).
        network: the network to load into.
        map_location: where tensors are loaded.
    """

    def __init__(self, load_path: str | os.PathLike, network: torch.nn.Module, map_location: Any = "cpu") -> None:
        self.load_path = str(load_path)
        self.network = network
        self.map_location = map_location

    def attach(self, engine: Engine) -> None:
        """Load when ``engine`` starts."""
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine | None = None) -> None:
        load_weights(
            self.network, self.load_path, map_location=self.map_location,
            hint="Inference weights must come from this bundle's network (train it, or convert published "
            "weights with `medsegzoo import-weights BUNDLE_DIR CHECKPOINT`).",
        )
        logger.info("loaded %s", self.load_path)


class InferenceWeights:
    """The state dict of a training network without its training-only parts, for a checkpoint saver.

    TCT trains auxiliary heads that inference never runs; the inference network
    (``aux_heads: false``) has no such keys. Saving ``InferenceWeights(network, ["aux_heads."])``
    instead of the network writes exactly the inference network's state dict, so the weights
    file loads strictly into ``inference.json``'s ``network_def`` and nothing is ignored at load
    time. The tensors are read when the saver writes, so the values are always current.

    Args:
        network: the training network.
        exclude: key prefixes of the training-only parts.
    """

    def __init__(self, network: torch.nn.Module, exclude: list[str] | tuple[str, ...] = ()) -> None:
        self.network = network
        self.exclude = tuple(exclude)

    def _module(self) -> torch.nn.Module:
        # DistributedDataParallel / DataParallel: the weights of the wrapped network, unprefixed
        return getattr(self.network, "module", self.network) if isinstance(
            self.network, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)) else self.network

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The network's state dict minus the excluded prefixes."""
        return {k: v for k, v in self._module().state_dict().items() if not k.startswith(self.exclude)}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load inference weights back (training-only parts keep their values)."""
        own = self._module().state_dict()
        missing = [k for k in own if k not in state and not k.startswith(self.exclude)]
        unexpected = [k for k in state if k not in own]
        if missing or unexpected:
            raise MedSegZooError(f"inference weights do not fit the network: missing {missing[:10]}, unexpected {unexpected[:10]}")
        self._module().load_state_dict(dict(state), strict=False)


class SaveInferenceWeights:
    """Write the final inference weights (``models/model.pt``) when training completes.

    Every bundle deploys the network as it is at the end of training (nnU-Net's final
    checkpoint; TCSeg's honest "last"; TCT has no validation split), whether or not a
    validation split also selects a ``model_best.pt``. Only a run that completes writes the
    file, atomically, so a crashed run never leaves weights that look final.

    Args:
        save_path: file to write.
        network: the trained network.
        exclude: key prefixes of training-only parts (see :class:`InferenceWeights`).
    """

    def __init__(self, save_path: str | os.PathLike, network: torch.nn.Module, exclude: list[str] | tuple[str, ...] = ()) -> None:
        self.save_path = Path(save_path)
        self.weights = InferenceWeights(network, exclude)

    def attach(self, engine: Engine) -> None:
        """Write when ``engine`` completes."""
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine | None = None) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
            return  # one writer under torchrun
        state = {k: v.detach().cpu() for k, v in self.weights.state_dict().items()}
        with atomic_path(self.save_path) as tmp:
            torch.save(state, tmp)
        logger.info("inference weights written to %s", self.save_path)
