"""Training speed of every bundle's CPU recipe: float32 against bf16 autocast, in one process.

For each bundle this builds the recipe's own trainer (``train.json`` + ``configs/cpu.json``,
parsed with MONAI's ``ConfigParser`` exactly as ``python -m monai.bundle run`` does) on a small
phantom set of the recipe's layout, runs ``--warmup`` + ``--iterations`` training iterations
in float32 and then in bf16 autocast (``amp`` false / true; everything else equal), and
prints per bundle:

* iterations per second in float32 and in bf16, and their ratio (the baseline is float32 in
  the same process, same data, same network);
* the share of each iteration spent waiting for the next batch (ignite's GET_BATCH events:
  data loading, caching misses and random crops), which must stay under 10 %.

The last line reads ``training speedup min X.XX, data wait max Y.Y %``. Run::

    .venv/bin/python benchmarks/bench_training.py                  # all four bundles, ~5 minutes
    .venv/bin/python benchmarks/bench_training.py --bundles tct stunet --iterations 20
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from ignite.engine import Events

from medsegzoo.bundle_runs import parse_bundle
from medsegzoo.recipes import CPU_RECIPES, get_recipe, prepare_recipe_data


class StepTimer:
    """Per-iteration wall time and time spent waiting for the batch (after ``warmup`` iterations)."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.iterations = 0
        self.total = 0.0
        self.waiting = 0.0
        self._batch_start = self._wait = 0.0

    def attach(self, engine) -> None:
        engine.add_event_handler(Events.GET_BATCH_STARTED, self._get_started)
        engine.add_event_handler(Events.GET_BATCH_COMPLETED, self._get_completed)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._completed)

    def _get_started(self, engine) -> None:
        self._batch_start = time.perf_counter()

    def _get_completed(self, engine) -> None:
        self._wait = time.perf_counter() - self._batch_start

    def _completed(self, engine) -> None:
        elapsed = time.perf_counter() - self._batch_start
        if engine.state.iteration > self.warmup:
            self.iterations += 1
            self.total += elapsed
            self.waiting += self._wait


def time_training(recipe, data, bundle_root: Path, amp: bool, warmup: int, iterations: int, extra: dict) -> StepTimer:
    """Run ``warmup + iterations`` iterations of the recipe's trainer; return the timer."""
    dataset_dir, datalist = data
    run = recipe.training(bundle_root, dataset_dir, datalist, amp=amp, max_epochs=1000, **{"train#handlers": []}, **extra)
    parser = parse_bundle(run)
    parser.get_parsed_content("initialize")
    trainer = parser.get_parsed_content("train#trainer")
    timer = StepTimer(warmup)
    timer.attach(trainer)
    trainer.add_event_handler(Events.ITERATION_COMPLETED(once=warmup + iterations), lambda e: e.terminate())
    trainer.run()
    return timer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", nargs="*", default=list(CPU_RECIPES), help="bundle names or prefixes")
    parser.add_argument("--iterations", type=int, default=10, help="timed iterations per precision")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    parser.add_argument("--cases", type=int, default=4, help="phantom cases per bundle")
    parser.add_argument("--work-dir", default=None, help="keep the phantoms and runs here")
    args = parser.parse_args(argv)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}")
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_training_"))
    rows = []
    for name in args.bundles:
        recipe = get_recipe(name)
        data = prepare_recipe_data(recipe, work / recipe.bundle, cases=args.cases, split="0.5/0.25/0.25")
        root = work / recipe.bundle / "run"
        extra = recipe.prepare(recipe.bundle_dir(), root) if recipe.prepare else {}
        timers = {amp: time_training(recipe, data, root, amp, args.warmup, args.iterations, extra) for amp in (False, True)}
        fp32, bf16 = timers[False], timers[True]
        row = {
            "bundle": recipe.bundle,
            "fp32": fp32.iterations / fp32.total,
            "bf16": bf16.iterations / bf16.total,
            "wait_fp32": 100 * fp32.waiting / fp32.total,
            "wait_bf16": 100 * bf16.waiting / bf16.total,
        }
        row["speedup"] = row["bf16"] / row["fp32"]
        rows.append(row)
        print(f"{row['bundle']}: fp32 {row['fp32']:.3f} it/s, bf16 {row['bf16']:.3f} it/s, "
              f"speed-up {row['speedup']:.2f}x, data wait {row['wait_fp32']:.1f} % / {row['wait_bf16']:.1f} %",
              flush=True)

    print("\n| bundle | fp32 it/s | bf16 it/s | bf16 / fp32 | data wait fp32 | data wait bf16 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['bundle']} | {r['fp32']:.3f} | {r['bf16']:.3f} | {r['speedup']:.2f}x | "
              f"{r['wait_fp32']:.1f} % | {r['wait_bf16']:.1f} % |")
    print(f"\ntraining speedup min {min(r['speedup'] for r in rows):.2f}, "
          f"data wait max {max(max(r['wait_fp32'], r['wait_bf16']) for r in rows):.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
