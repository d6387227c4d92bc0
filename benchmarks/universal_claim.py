"""The universal model's claims on phantoms: text embeddings vs one-hot codes, and class extension.

Paper (CLIP-Driven Universal Model): class embeddings from CLIP text prompts beat one-hot task
codes (Table 2: 73.86 vs 67.18 mean DSC on MSD tasks), tumors are detected per patient with
high specificity (Table 4: 95 / 95 / 91 %), and new classes can be added by training only new
heads while every old output stays exactly as it was (section 5.4).

Here, per seed: five partially labeled phantom sets of five sites (BTCV-like 13 organs at
site 0; KiTS19-like kidneys + tumors at 1; MSD-Liver-like liver + tumors at 2, half the
patients with a tumor; AMOS-like 15 organs at 3; MSD-Pancreas-like pancreas + tumors at 4, half
with a tumor), 8 patients each (4 train / 1 validation / 3 test). Until 2026-12-08 the set at
site 3 was MSD-Spleen-like (the spleen alone): with four of five sets labeling one to three
classes, most heads collapsed onto the spleen or the liver, even when every set was drawn at
one site (bundle README, "The claim on phantoms"); the paper's mix is dominated by sets that
label many organs (AMOS, WORD, AbdomenCT-1K, BTCV), and so is this one now. The arms differ only in the
class embeddings: MiniLM sentence embeddings of the paper's prompt (384-d; the CLIP weights
cannot be downloaded here: MiniLM is not CLIP) or one-hot codes. The organ upper bound trains
on the same patients with all 13 BTCV organs labeled. Extension: a MiniLM model trained
without ``pancreas_tumor`` is extended to it with ``configs/extend.json`` (new heads only, 10
epochs, on an MSD-Pancreas-like set of 8 other patients, every one with a tumor); the extended
model's old outputs are compared bit for bit with the base model's, and its new class is scored
on that set's 3 held-out patients (``configs/inference_extended.json``). Run::

    .venv/bin/python benchmarks/universal_claim.py --seeds 0 1 2 --out benchmarks/output/universal_claim
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from claims import (
    ENV,
    Arm,
    TestSet,
    describe_recipe,
    parse_claim_args,
    prefix_case_ids,
    run_experiment,
    select_arms,
    write_claim,
)

from medsegzoo.bundle_runs import BundleRun, parse_bundle, run_in_subprocess
from medsegzoo.data.combine import combine_datalists
from medsegzoo.data.partial_labels import labeled_classes
from medsegzoo.data.phantom_sets import make_phantom_set
from medsegzoo.recipes import get_recipe, text_embeddings_writer
from medsegzoo.taxonomy import get_label_system, is_lesion
from medsegzoo.utils.atomic import atomic_write_text

SIZE = 128
SETS = (("btcv", 0, None), ("kits19", 1, 1.0), ("msd_liver", 2, 0.5), ("amos", 3, None), ("msd_pancreas", 4, 0.5))
ALL = list(get_label_system("universal32").classes)
BTCV13 = ALL[:13]
NEW_CLASS = "pancreas_tumor"
TRAINED = sorted(set().union(*(labeled_classes(layout, "universal32") for layout, _, _ in SETS)), key=ALL.index)
ORGANS = [c for c in TRAINED if not is_lesion(c)]
TUMORS = [c for c in TRAINED if is_lesion(c)]

PAPER = """| class embedding | MSD mean DSC % (Table 2) | tumor detection specificity % (Table 4) |
|---|---|---|
| one-hot | 67.18 | |
| CLIP "A computerized tomography of a [CLS]" | 73.86 | 95 / 95 / 91 (liver / kidney / pancreas tumors) |

Extension (section 5.4): new heads only; old classes unchanged."""


def make_data(seed: int, root: Path, cases: int = 8) -> dict[str, tuple[Path, Path]]:
    """The partially labeled mix and the same patients with the 13 BTCV organs labeled."""
    partial, full = [], []
    for i, (layout, site, tumor_probability) in enumerate(SETS):
        patient_seed = 100 * seed + i
        partial.append(make_phantom_set(root / "partial" / layout, layout, cases, size=SIZE, site=site,
                                        seed=patient_seed, split="0.5/0.125/0.375", tumors=tumor_probability is not None,
                                        tumor_probability=tumor_probability))
        full.append(make_phantom_set(root / "full" / f"btcv_{i}", "btcv", cases, size=SIZE, site=site,
                                     seed=patient_seed, split="0.5/0.125/0.375"))
        prefix_case_ids(full[-1][1], f"site{site}_")  # the fully labeled sets share the BTCV layout's ids
    out = {}
    for name, parts in (("partial", partial), ("full", full)):
        path = combine_datalists([(dl, ds) for ds, dl in parts], root / name / "datalist.json", root / name, name=f"universal_{name}_s{seed}")
        out[name] = (root / name, Path(path))
    # the extension learns the new class from other pancreas-tumor patients, every one with a
    # tumor, so that its 3 test patients always have one to score (at probability 0.5 all three
    # may have none, as in seed 0)
    out["extension"] = make_phantom_set(root / "extension" / "msd_pancreas", "msd_pancreas", cases, size=SIZE,
                                        site=SETS[-1][1], seed=100 * seed + 60, split="0.5/0.125/0.375", tumors=True,
                                        tumor_probability=1.0)
    return out


def extension(arm: Arm, seed: int, root: Path, data: dict[str, tuple[Path, Path]],
              settings: dict[str, Any]) -> dict[str, Any]:
    """Train a base model without NEW_CLASS, extend it, compare old outputs, score the new class.

    The base model trains like the arms (``settings``: the experiment's overrides); the result is
    kept in ``extension/extension.json``, so a resumed experiment does not train it again.
    """
    if arm.name != "MiniLM text":
        return {}
    recipe = get_recipe("clip")
    base_classes = [c for c in ALL if c != NEW_CLASS]
    base_root = root.parent / "extension"
    result_file = base_root / "extension.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    prepare = text_embeddings_writer("minilm", base_classes)
    extra = prepare(recipe.bundle_dir(), base_root)
    dataset_dir, datalist = data["partial"]
    run_in_subprocess(recipe.training(base_root, dataset_dir, datalist, seed=seed, **extra, **settings),
                      log=base_root / "train.log", env=ENV)
    pancreas_dir, pancreas_list = data["extension"]
    ext = {**extra, "new_classes": [NEW_CLASS], "text_encoder": "minilm", "text_model": None, "max_epochs": 10}
    run_in_subprocess(BundleRun(recipe.bundle_dir(), ["train.json", "extend.json", "cpu.json"],
                                {"bundle_root": base_root, "dataset_dir": pancreas_dir, "datalist": pancreas_list, "seed": seed, **ext},
                                run_id="training"), log=base_root / "extend.log", env=ENV)
    # old outputs of the extended model equal the base model's, bit for bit, on a test image
    common = {"bundle_root": base_root, "dataset_dir": pancreas_dir, "datalist": pancreas_list, **ext}
    base = parse_bundle(BundleRun(recipe.bundle_dir(), ["train.json", "cpu.json"], {**common, "device": "$torch.device('cpu')"}))
    base_net = base.get_parsed_content("network_def")
    base_net.load_state_dict(torch.load(base_root / "models" / "model.pt", weights_only=True))
    extended = parse_bundle(BundleRun(recipe.bundle_dir(), ["train.json", "extend.json", "cpu.json"], {**common, "device": "$torch.device('cpu')"}))
    ext_net = extended.get_parsed_content("network")
    ext_net.load_state_dict(torch.load(base_root / "models" / "extended" / "model.pt", weights_only=True))
    image = torch.rand(1, 1, 48, 48, 48, generator=torch.Generator().manual_seed(seed))  # any input: same property
    with torch.no_grad():
        old, new = base_net.eval()(image), ext_net.eval()(image)
    identical = bool(torch.equal(new[:, : old.shape[1]], old))
    # score the new class on the extension set's held-out patients with the extended model
    pred = base_root / "eval_extended"
    run_in_subprocess(BundleRun(recipe.bundle_dir(), ["inference.json", "inference_extended.json", "evaluate.json", "cpu.json"],
                                {**common, "predict_classes": [*ORGANS, NEW_CLASS],
                                 "output_dir": pred, "infer_split": "test"}, run_id="evaluating"), log=base_root / "evaluate_extended.log", env=ENV)
    import pandas as pd

    table = pd.read_csv(pred / "report" / "per_case.csv")
    new_dsc = float(table[table["class"] == NEW_CLASS]["dsc"].mean())
    result = {"extension old outputs identical": identical, "extension new-class DSC": new_dsc}
    atomic_write_text(result_file, json.dumps(result))
    return result


ARMS = (
    Arm("MiniLM text", "partial", eval_overrides={"predict_classes": TRAINED}, prepare=text_embeddings_writer("minilm")),
    Arm("one-hot", "partial", eval_overrides={"predict_classes": TRAINED}, prepare=text_embeddings_writer("one_hot")),
    Arm("supervised, 13 organs fully labeled (upper bound)", "full", eval_overrides={"predict_classes": BTCV13},
        prepare=text_embeddings_writer("minilm")),
)
TESTS = (TestSet("held-out patients", "partial", "test", groups={"organs": ORGANS, "tumors": TUMORS}),)


def main(argv: list[str] | None = None) -> int:
    args = parse_claim_args(argv, __doc__.splitlines()[0], "benchmarks/output/universal_claim")
    recipe = get_recipe("clip")
    start = time.perf_counter()
    if args.report_only:
        import pandas as pd

        runs = pd.read_csv(args.out / "runs.csv")
    else:
        runs = run_experiment(recipe, select_arms(ARMS, args.arms), TESTS, args.seeds, make_data, args.out.resolve(),
                              bundles_dir=args.bundles_dir, overrides=args.overrides, after_run=extension)
    extra = [c for c in runs.columns if c.endswith(("sensitivity", "specificity")) or c.startswith("extension")]
    setting = (f"Seeds {args.seeds}; {describe_recipe(recipe, args.bundles_dir, args.overrides)}; "
               f"phantoms of {SIZE} mm; sets {SETS} (layout, site, tumor probability), 8 patients each. "
               f"Wall time {time.perf_counter() - start:.0f} s.")
    print(write_claim(args.out, "Universal model: text embeddings vs one-hot, and class extension", setting, runs, PAPER,
                      "(filled in the bundle README after the run)", extra_columns=extra))
    return 0


if __name__ == "__main__":
    sys.exit(main())
