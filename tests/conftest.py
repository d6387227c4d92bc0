"""Session-wide fixtures: phantom data sets written once and shared by every test file that reads them.

Phantoms are written with the real ``medsegzoo phantoms`` / ``medsegzoo datalist`` commands
(:func:`bundle_utils.make_phantom_datalist`). The same FLARE22-like set, for example, feeds the
STU-Net bundle tests and the A-Eval driver tests; it is generated once per session.

Shared sets are read-only: a test that changes files of its data set writes its own in
``tmp_path``. The small trained U-Net of the inference tests is trained once per session
(``trained_unet``); the bundles' trained models stay in the module-scoped fixtures of their test
files, because each is read by that one file only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from bundle_utils import make_mixed_phantom_datalist, make_phantom_datalist
from trained_models import train_small_unet

PhantomSetFactory = Callable[..., tuple[Path, Path]]


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, each worker gets its share of the cores (torch and child processes).

    Two workers with one thread each keep both cores busy through the Python-bound parts of the
    tests, where one process with two threads leaves one idle.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)  # inherited by the real CLI runs


def _key(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_key(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _key(v)) for k, v in value.items()))
    return value


@pytest.fixture(scope="session")
def phantom_set(tmp_path_factory: pytest.TempPathFactory) -> PhantomSetFactory:
    """``phantom_set(layout, **make_phantom_datalist arguments) -> (dataset_dir, datalist)``, written once.

    Calls with the same arguments, from any test file, return the same folders.
    """
    root = tmp_path_factory.mktemp("phantom_sets")
    written: dict[Any, tuple[Path, Path]] = {}

    def get(layout: str, **kwargs: Any) -> tuple[Path, Path]:
        key = (layout, _key(kwargs))
        if key not in written:
            written[key] = make_phantom_datalist(root, layout, folder=f"{layout}_{len(written)}", **kwargs)
        return written[key]

    return get


@pytest.fixture(scope="session")
def mixed_phantom_set(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Sequence[dict[str, Any]], int], tuple[Path, Path]]:
    """``mixed_phantom_set(parts, size) -> (dataset_dir, datalist)``: several sets in one datalist, written once."""
    root = tmp_path_factory.mktemp("mixed_phantom_sets")
    written: dict[Any, tuple[Path, Path]] = {}

    def get(parts: Sequence[dict[str, Any]], size: int = 48) -> tuple[Path, Path]:
        key = (_key(list(parts)), size)
        if key not in written:
            written[key] = make_mixed_phantom_datalist(root, parts, size=size, name=f"mixed_{len(written)}")
        return written[key]

    return get



@pytest.fixture(scope="session")
def trained_unet() -> torch.nn.Module:
    """A small 3D U-Net trained on :func:`trained_models.padded_case` phantoms (eval mode); do not train it further."""
    return train_small_unet()
