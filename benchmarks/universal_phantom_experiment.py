"""Universal Model on phantoms: MiniLM text embeddings vs one-hot class codes, 3 seeds.

The paper's Table 2 compares one-hot task codes (67.18 mean DSC on MSD) with CLIP embeddings
(73.86). Here the same comparison runs at CPU scale on synthetic phantoms: partially labeled
training sets (BTCV: 13 organs; KiTS19: kidneys + kidney tumor; MSD Liver: liver + tumor; MSD
Spleen: spleen) train a small U-Net Universal Model; held-out phantoms from other sites (with
and without tumors) measure organ DSC, tumor DSC and patient-level tumor sensitivity and
specificity. Text embeddings come from the offline MiniLM (384-d; CLIP weights cannot be
downloaded here); one-hot codes are the baseline. Everything else (data, seeds, iterations)
is identical between the two arms; the run prints the median and range over the seeds.

Run from the repository root::

    python benchmarks/universal_phantom_experiment.py --iterations 250 --seeds 0 1 2

It uses the package's own pieces (transforms, network, loss, post-processing, metrics) in one
process; the bundle's CLI path is exercised by tests/test_bundle_universal.py.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import DataLoader, Dataset, list_data_collate
from monai.inferers import SlidingWindowInferer
from monai.transforms import (
    Compose,
    CropForegroundd,
    DeleteItemsd,
    LoadImaged,
    Orientationd,
    RandCropByPosNegLabeld,
    RandRotate90d,
    RandShiftIntensityd,
    ScaleIntensityRanged,
    SelectItemsd,
    Spacingd,
    SpatialPadd,
)

from medsegzoo.engines.universal import (
    MaskUnlabeledChannelsd,
    SelectChannelsd,
    dataset_balanced_weights,
    load_partial_split,
)
from medsegzoo.evaluation.metrics import dice_coefficient
from medsegzoo.inference.postprocess import UniversalPostprocess
from medsegzoo.losses.universal import UniversalLoss
from medsegzoo.networks.text_encoders import compute_text_embeddings
from medsegzoo.networks.universal import UniversalModel
from medsegzoo.taxonomy import is_lesion
from medsegzoo.transforms import ConvertLabelsd, ForegroundUniond, LabeledClassesMaskd

TRAIN_SETS = (("btcv", 4, 0), ("kits19", 4, 1), ("msd_liver", 4, 2), ("msd_spleen", 4, 3))
# held-out sites; the tumor probability gives patients with and without tumors
TEST_SETS = (("btcv", 3, 4, None), ("kits19", 4, 5, 0.5), ("msd_liver", 4, 6, 0.5))
SPACING = (1.5, 1.5, 1.5)
PATCH = (32, 32, 32)
SYSTEM = "universal32"


def _run(cmd: list[str]) -> None:
    subprocess.run([sys.executable, "-m", "medsegzoo", *cmd], check=True, capture_output=True, text=True)


def make_data(root: Path, size: int) -> tuple[list[str], list[str]]:
    """Phantom sets and their datalists (the official split: every labeled case in 'training')."""
    train, test = [], []
    for layout, cases, site in TRAIN_SETS:
        folder = root / f"train_{layout}"
        _run(["phantoms", str(folder), "--layout", layout, "--cases", str(cases), "--size", str(size), "--site", str(site), "--seed", str(site), "--overwrite", "--quiet"])
        _run(["datalist", layout, str(folder), "--out", str(folder / "datalist.json")])
        train.append(str(folder / "datalist.json"))
    for layout, cases, site, tumor_p in TEST_SETS:
        folder = root / f"test_{layout}"
        extra = [] if tumor_p is None else ["--tumor-probability", str(tumor_p)]
        _run(["phantoms", str(folder), "--layout", layout, "--cases", str(cases), "--size", str(size), "--site", str(site), "--seed", str(100 + site), "--overwrite", "--quiet", *extra])
        _run(["datalist", layout, str(folder), "--out", str(folder / "datalist.json")])
        test.append(str(folder / "datalist.json"))
    return train, test


def base_transforms(classes: list[str]) -> list[Any]:
    """The bundle's deterministic preprocessing (configs/train.json base_transforms)."""
    return [
        SelectItemsd(keys=["image", "label", "labeled_classes", "dataset", "case_id"], allow_missing_keys=True),
        LoadImaged(keys=["image", "label"], ensure_channel_first=True, image_only=True),
        Orientationd(keys=["image", "label"], axcodes="RAS"),
        Spacingd(keys=["image", "label"], pixdim=SPACING, mode=["bilinear", "nearest"]),
        ScaleIntensityRanged(keys="image", a_min=-175, a_max=250, b_min=0.0, b_max=1.0, clip=True),
        CropForegroundd(keys=["image", "label"], source_key="image", allow_smaller=True),
        ConvertLabelsd(keys="label", target=SYSTEM, multi_hot=True),
        LabeledClassesMaskd(keys="labeled_classes", system=SYSTEM),
        SelectChannelsd(keys=["label", "labeled_classes"], system=SYSTEM, classes=classes),
        SpatialPadd(keys=["image", "label"], spatial_size=PATCH),
    ]


def train_and_test(encoder: str, seed: int, train_cases: list[dict], test_cases: list[dict], classes: list[str],
                   iterations: int, cache: dict[str, list]) -> dict[str, float]:
    """One arm, one seed: train, predict the held-out phantoms, score."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    kwargs = {"width": len(classes)} if encoder == "onehot" else {}
    emb = compute_text_embeddings(classes, encoder, **kwargs)
    model = UniversalModel(emb.embeddings, backbone="unet", unet_base_channels=8, class_names=classes)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-5)
    loss_fn = UniversalLoss()
    augment = Compose([
        ForegroundUniond(keys="label", output_key="foreground"),  # as the bundle: keeps channel 0 (spleen)
        RandCropByPosNegLabeld(keys=["image", "label"], label_key="foreground", spatial_size=PATCH, pos=2, neg=1, num_samples=2, image_key="image", image_threshold=0),
        DeleteItemsd(keys="foreground"),
        RandRotate90d(keys=["image", "label"], prob=0.1, max_k=3),
        RandShiftIntensityd(keys="image", offsets=0.1, prob=0.2),
        MaskUnlabeledChannelsd(keys="label"),
    ])
    augment.set_random_state(seed=seed)
    sampler = torch.utils.data.WeightedRandomSampler(dataset_balanced_weights(train_cases), num_samples=iterations * 2, replacement=True, generator=torch.Generator().manual_seed(seed))
    loader = DataLoader(Dataset(cache["train"], transform=augment), batch_size=2, sampler=sampler, collate_fn=list_data_collate)
    model.train()
    for batch in loader:
        opt.zero_grad()
        loss = loss_fn(model(batch["image"]), batch["label"])
        loss.backward()
        opt.step()
    model.eval()
    inferer = SlidingWindowInferer(roi_size=PATCH, sw_batch_size=4, overlap=0.25, mode="gaussian")
    post = UniversalPostprocess(classes, system=SYSTEM, output="masks")
    organ_dsc, tumor_dsc, detections = [], [], []
    for case in cache["test"]:
        with torch.no_grad():
            logits = inferer(case["image"][None], model)[0]
        pred = post(logits).numpy().astype(bool)
        truth = case["label"].numpy() > 0.5
        for i, name in enumerate(classes):
            if not bool(case["labeled_classes"][i]):
                continue
            if is_lesion(name):
                detections.append((bool(truth[i].any()), bool(pred[i].any())))
                if truth[i].any():
                    tumor_dsc.append(dice_coefficient(pred[i], truth[i]))
            elif truth[i].any():
                organ_dsc.append(dice_coefficient(pred[i], truth[i]))
    positives = [p for t, p in detections if t]
    negatives = [p for t, p in detections if not t]
    return {
        "organ_dsc": 100 * float(np.mean(organ_dsc)),
        "tumor_dsc": 100 * float(np.mean(tumor_dsc)) if tumor_dsc else float("nan"),
        "sensitivity": 100 * float(np.mean(positives)) if positives else float("nan"),
        "specificity": 100 * float(np.mean([not p for p in negatives])) if negatives else float("nan"),
        "tumor_patients": f"{len(positives)}+/{len(negatives)}-",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=250)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--encoders", nargs="+", default=["minilm", "onehot"])
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the per-seed results")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        train_lists, test_lists = make_data(Path(tmp), args.size)
        train_cases = load_partial_split(train_lists, "training", system=SYSTEM)
        test_cases = load_partial_split(test_lists, "training", system=SYSTEM)
        names = set()
        for c in train_cases:
            names.update(c["labeled_classes"])
        from medsegzoo.transforms import LabeledClassesMask

        flags = torch.stack([LabeledClassesMask(SYSTEM)(c["labeled_classes"]) for c in train_cases]).amax(0)
        from medsegzoo.taxonomy import get_label_system

        classes = [c for c, f in zip(get_label_system(SYSTEM).classes, flags.tolist(), strict=True) if f]
        pre = Compose(base_transforms(classes))
        cache = {"train": [pre(c) for c in train_cases], "test": [pre(c) for c in test_cases]}
        print(f"{len(train_cases)} training / {len(test_cases)} held-out phantoms, {len(classes)} classes, "
              f"data ready in {time.perf_counter() - start:.0f} s", flush=True)
        results: dict[str, list[dict[str, Any]]] = {e: [] for e in args.encoders}
        for seed in args.seeds:
            for encoder in args.encoders:
                t0, c0 = time.perf_counter(), time.process_time()
                r = train_and_test(encoder, seed, train_cases, test_cases, classes, args.iterations, cache)
                results[encoder].append(r)
                print(f"seed {seed} {encoder:7s} {json.dumps(r)} ({time.perf_counter() - t0:.0f} s wall, "
                      f"{time.process_time() - c0:.0f} s CPU)", flush=True)
    print(f"\n{len(args.seeds)} seeds, {args.iterations} iterations each; median [min, max]\n")
    print("| embedding | organ DSC | tumor DSC | tumor sensitivity | tumor specificity |")
    print("|---|---|---|---|---|")
    for encoder, rows in results.items():
        cells = []
        for key in ("organ_dsc", "tumor_dsc", "sensitivity", "specificity"):
            values = [r[key] for r in rows if r[key] == r[key]]
            cells.append(f"{statistics.median(values):.1f} [{min(values):.1f}, {max(values):.1f}]" if values else "n/a")
        print(f"| {encoder} | " + " | ".join(cells) + " |")
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
