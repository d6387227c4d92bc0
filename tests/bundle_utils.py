"""Shared helpers of the bundle tests: run the real CLIs in subprocesses.

* :func:`run_bundle` runs ``python -m monai.bundle run [RUN_ID] --config_file [...] --key value``
  for a bundle in ``bundles/`` and returns the completed process; on failure the assertion
  message carries the command and the tail of its output.
* :func:`monai_bundle` runs any other ``monai.bundle`` sub-command (verify_metadata,
  verify_net_in_out, ckpt_export).
* :func:`make_phantom_datalist` writes phantoms in a public layout with ``medsegzoo phantoms``
  and builds their datalist with ``medsegzoo datalist``, exactly as a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medsegzoo.bundle_runs import run_cli_in_process

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLES_DIR = REPO_ROOT / "bundles"
META_SCHEMA = REPO_ROOT / "common" / "medsegzoo" / "resources" / "meta_schema.json"
MEDSEGZOO = [sys.executable, "-m", "medsegzoo"]
OUTPUT_TAIL = 6000
# the FLARE22-like set of the STU-Net bundle and A-Eval driver tests (2 training, 2 test cases):
# ``phantom_set("flare22", **FLARE22_SMOKE)`` writes it once per session (tests/conftest.py)
FLARE22_SMOKE = {"cases": 4, "size": 48, "site": 0, "seed": 0, "split": "0.5/0.0/0.5", "phantom_args": ("--no-tumors",)}


def bundle_dir(bundle: str | os.PathLike) -> Path:
    """``bundles/<name>`` for a bundle name, or the given path when it is a folder."""
    path = Path(bundle)
    return path if path.is_dir() else BUNDLES_DIR / str(bundle)


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")  # a missing hub file fails at once instead of retrying
    env.setdefault("MPLBACKEND", "Agg")
    env.setdefault("OMP_NUM_THREADS", "2")  # the CI machine's cores are shared
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT / "common"), env.get("PYTHONPATH", "")) if p)
    if extra:
        env.update(extra)
    return env


def _cli_value(value: Any) -> str:
    """Render an override for MONAI's fire-based CLI (Python literals are parsed back)."""
    if isinstance(value, (str, os.PathLike)):
        return str(value)
    if isinstance(value, bool):
        return "True" if value else "False"
    return json.dumps(value)


def run_command(cmd: Sequence[str], cwd: str | os.PathLike | None = None, check: bool = True,
                timeout: float = 1200, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``cmd``; with ``check`` fail the test with the command and its output tail."""
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=str(cwd) if cwd else None, capture_output=True, text=True,
        timeout=timeout, env=_env(env), check=False,
    )
    if check and proc.returncode != 0:
        output = (proc.stdout + "\n" + proc.stderr)[-OUTPUT_TAIL:]
        raise AssertionError(
            f"command failed with exit code {proc.returncode}:\n  {' '.join(map(str, cmd))}\n"
            f"--- output (tail) ---\n{output}"
        )
    return proc


def config_files_arg(bundle: str | os.PathLike, configs: Sequence[str] | str) -> str:
    """The ``--config_file`` value: one path or a Python list of paths inside the bundle."""
    root = bundle_dir(bundle)
    names = [configs] if isinstance(configs, str) else list(configs)
    paths = [str(root / "configs" / n if "/" not in n else root / n) for n in names]
    return paths[0] if len(paths) == 1 else "[" + ",".join(f"'{p}'" for p in paths) + "]"


def run_bundle(
    bundle: str | os.PathLike,
    configs: Sequence[str] | str,
    overrides: Mapping[str, Any] | None = None,
    cwd: str | os.PathLike | None = None,
    run_id: str | None = None,
    check: bool = True,
    timeout: float = 1200,
    env: Mapping[str, str] | None = None,
    cli: bool = False,
) -> subprocess.CompletedProcess:
    """Run ``python -m monai.bundle run [run_id] --config_file ... --key value ...``.

    By default the command line is parsed and run in this process by MONAI's own ``fire``
    entry point (:func:`medsegzoo.bundle_runs.run_cli_in_process`): the same code path without
    the ~6 s of starting Python and importing torch, MONAI and ignite. ``cli=True`` starts the
    real process; each bundle's tests keep one such run (and every hard-exit crash test).

    Args:
        bundle: bundle name (folder in ``bundles/``) or path.
        configs: config file name(s) in the bundle's ``configs/`` (or paths relative to the
            bundle, with a slash), merged left to right.
        overrides: ``--key value`` pairs (``#`` nests: ``"train#trainer#max_epochs"``).
            ``bundle_root`` defaults to the bundle folder.
        cwd: working directory (default: the bundle folder).
        run_id: the run target ("training", "inference", "evaluating"); None is plain ``run``.
        check: fail (AssertionError with the output tail) on a non-zero exit code.
        timeout: seconds (a real process only).
        env: extra environment variables (a real process only: given, it implies ``cli``).
        cli: run ``python -m monai.bundle`` in a child process.

    Returns:
        The completed process (output as text; in this process everything is in ``stdout``).
    """
    root = bundle_dir(bundle)
    values = {"bundle_root": str(root)}
    values.update(overrides or {})
    args = ["run"]
    if run_id:
        args.append(run_id)
    args += ["--config_file", config_files_arg(root, configs)]
    for key, value in values.items():
        args += [f"--{key}", _cli_value(value)]
    return monai_bundle(*args, cwd=cwd or root, check=check, timeout=timeout, env=env, cli=cli)


def monai_bundle(*args: Any, cwd: str | os.PathLike | None = None, check: bool = True, timeout: float = 600,
                 env: Mapping[str, str] | None = None, cli: bool = False) -> subprocess.CompletedProcess:
    """``python -m monai.bundle ARGS...`` (run, verify_metadata, verify_net_in_out, ckpt_export).

    In this process by default (see :func:`run_bundle`); ``cli=True`` or ``env`` start the real
    command. With ``check``, a non-zero exit fails the test with the command and its output tail.
    """
    if cli or env:
        return run_command([sys.executable, "-m", "monai.bundle", *map(str, args)], cwd=cwd, check=check,
                           timeout=timeout, env=env)
    proc = run_cli_in_process([str(a) for a in args], cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"command failed with exit code {proc.returncode}:\n  {' '.join(map(str, proc.args))}\n"
            f"--- output (tail) ---\n{proc.stdout[-OUTPUT_TAIL:]}"
        )
    return proc


def make_phantom_datalist(
    tmp_path: str | os.PathLike,
    layout: str,
    cases: int = 4,
    size: int = 48,
    seed: int = 0,
    site: int | None = None,
    split: str | None = "0.5/0.25/0.25",
    phantom_args: Sequence[str] = (),
    datalist_args: Sequence[str] = (),
    folder: str | None = None,
) -> tuple[Path, Path]:
    """Write phantoms in a public layout and their datalist with the real ``medsegzoo`` CLI.

    Runs ``medsegzoo phantoms OUT --layout LAYOUT ...`` then ``medsegzoo datalist LAYOUT
    <layout folder> --out <OUT>/datalist.json ...``.

    Args:
        tmp_path: parent folder.
        layout: layout / data set name both CLIs accept ("kits19", "msd_liver", "btcv", ...).
        cases: number of labeled phantom cases.
        size: field of view in nominal 1 mm voxels per axis.
        seed: phantom seed (also the seed of the random split).
        site: acquisition site index (None: the generator's default, site 0).
        split: ``medsegzoo datalist --split`` value (TRAIN/VAL/TEST fractions); None: official.
        phantom_args: more ``medsegzoo phantoms`` arguments (e.g. ``["--no-tumors"]``).
        datalist_args: more ``medsegzoo datalist`` arguments.
        folder: sub-folder name (default: ``<layout>_s<seed>``).

    Returns:
        ``(dataset_dir, datalist_path)``: the data set folder as the layout distributes it (the
        datalist's paths are relative to it) and the datalist JSON.
    """
    out = Path(tmp_path) / (folder or f"{layout}_s{seed}")
    cmd = [*MEDSEGZOO, "phantoms", out, "--layout", layout, "--cases", cases, "--size", size,
           "--seed", seed, "--quiet"]
    if site is not None:
        cmd += ["--site", site]
    proc = run_command([*cmd, *phantom_args])
    printed = proc.stdout.strip().splitlines()[-1].strip()
    dataset_dir = Path(printed) if Path(printed).is_absolute() else Path.cwd() / printed
    if not dataset_dir.is_dir():
        dataset_dir = out
    datalist = out / "datalist.json"
    cmd = [*MEDSEGZOO, "datalist", layout, dataset_dir, "--out", datalist]
    if split is not None:
        cmd += ["--split", split, "--seed", seed]
    run_command([*cmd, *datalist_args])
    return dataset_dir, datalist


def make_mixed_phantom_datalist(
    tmp_path: str | os.PathLike,
    parts: Sequence[Mapping[str, Any]],
    size: int = 48,
    name: str = "mixed",
) -> tuple[Path, Path]:
    """Several phantom data sets in one datalist (partial-label training on a mix of sets).

    Args:
        tmp_path: parent folder; everything is written under ``tmp_path / name``.
        parts: keyword arguments of :func:`make_phantom_datalist` per data set
            (``{"layout": "kits19", "cases": 4, "seed": 1, "site": 1}``, ...).
        size: default phantom size.
        name: folder and datalist name.

    Returns:
        ``(dataset_dir, datalist_path)`` of the combined datalist.
    """
    from medsegzoo.data.combine import combine_datalists

    root = Path(tmp_path) / name
    pieces = []
    for i, part in enumerate(parts):
        kwargs = {"size": size, **part}
        kwargs.setdefault("folder", f"{kwargs['layout']}_{i}")
        pieces.append(make_phantom_datalist(root, **kwargs))
    datalist = root / "datalist.json"
    combine_datalists([(dl, ds) for ds, dl in pieces], datalist, root, name=name)
    return root, datalist


def bundle_parser(bundle: str | os.PathLike, configs: Sequence[str] | str,
                  overrides: Mapping[str, Any] | None = None) -> Any:
    """A bundle's merged configs parsed in this process (MONAI ``ConfigParser``), as ``run`` does.

    Args:
        bundle: bundle name or path.
        configs: config file names merged left to right (see :func:`config_files_arg`).
        overrides: ``key`` / ``a#b`` values; ``bundle_root`` defaults to the bundle folder.

    Returns:
        The parsed ``monai.bundle.ConfigParser``.
    """
    from monai.bundle import ConfigParser

    root = bundle_dir(bundle)
    names = [configs] if isinstance(configs, str) else list(configs)
    parser = ConfigParser()
    parser.read_config([str(root / "configs" / n if "/" not in n else root / n) for n in names])
    parser.update({"bundle_root": str(root), **{k: (str(v) if isinstance(v, os.PathLike) else v)
                                                for k, v in (overrides or {}).items()}})
    parser.parse()
    return parser


def precision_training_steps(bundle: str | os.PathLike, configs: Sequence[str], overrides: Mapping[str, Any],
                             amp: bool, steps: int = 3) -> tuple[list[float], Any]:
    """Run ``steps`` iterations of a bundle's own trainer, in float32 or bf16 autocast.

    Runs the config's ``initialize`` list (seeding) and then ``train#trainer`` for ``steps``
    iterations, without validation, checkpoints or resume.

    Returns:
        ``(loss per iteration, the gradient of every parameter at the first iteration, flattened)``.
    """
    import torch
    from ignite.engine import Events
    from monai.engines.utils import IterationEvents

    parser = bundle_parser(bundle, configs, {**overrides, "amp": amp, "train#handlers": [], "max_epochs": 1000})
    parser.get_parsed_content("initialize")
    trainer = parser.get_parsed_content("train#trainer")
    network = parser.get_parsed_content("network")
    losses: list[float] = []
    gradients: list[Any] = []

    def keep_gradient(engine: Any) -> None:
        if engine.state.iteration == 1:
            grads = [p.grad.detach().float().flatten() for p in network.parameters() if p.grad is not None]
            gradients.append(torch.cat(grads))

    def record(engine: Any) -> None:
        out = engine.state.output
        first = out[0] if isinstance(out, list) else out
        losses.append(float(torch.as_tensor(first["loss"]).float()))
        if len(losses) >= steps:
            engine.terminate()

    trainer.add_event_handler(IterationEvents.BACKWARD_COMPLETED, keep_gradient)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, record)
    trainer.run()
    return losses, gradients[0]


def assert_bf16_steps_match_fp32(bundle: str | os.PathLike, configs: Sequence[str], overrides: Mapping[str, Any],
                                 steps: int = 3, first_loss_rtol: float = 0.01, loss_rtol: float = 0.05,
                                 gradient_cosine: float = 0.95) -> None:
    """A few bf16 training steps of a bundle match the same steps in float32.

    Both runs start from the same seed (same initial weights, same batches). Stated tolerance:
    the first iteration's loss (same weights, only the forward precision differs) within
    ``first_loss_rtol``, every later one within ``loss_rtol`` (the two runs' weights drift
    apart), and the first iteration's gradient of all parameters pointing the same way (cosine
    similarity at least ``gradient_cosine``). Weights are not compared element-wise: Adam's
    first steps are nearly ``lr * sign(grad)``, which flips for parameters whose gradient is ~0
    under any rounding.
    """
    import torch

    from medsegzoo.inference.autocast import cpu_supports_bf16

    if not cpu_supports_bf16():
        import pytest

        pytest.skip("this CPU has no bf16 support: amp falls back to float32")
    fp32_losses, fp32_grad = precision_training_steps(bundle, configs, overrides, amp=False, steps=steps)
    bf16_losses, bf16_grad = precision_training_steps(bundle, configs, overrides, amp=True, steps=steps)
    assert len(fp32_losses) == len(bf16_losses) == steps
    for i, (a, b) in enumerate(zip(fp32_losses, bf16_losses)):
        tolerance = first_loss_rtol if i == 0 else loss_rtol
        assert abs(a - b) <= tolerance * abs(a), f"iteration {i + 1}: loss fp32 {a:.5f} vs bf16 {b:.5f}"
    assert fp32_grad.norm() > 0, "no gradient in float32"
    cosine = float(torch.nn.functional.cosine_similarity(fp32_grad, bf16_grad, dim=0))
    assert cosine >= gradient_cosine, f"bf16 and fp32 gradients disagree: cosine {cosine:.4f}"
