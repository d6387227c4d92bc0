"""TCT's claim on phantoms: TCT vs TAL vs ME (and TCT without consistency), beside full supervision.

Paper (TCT, Table 1-3): trained on four partially labeled CT sets (KiTS19 kidneys, MSD Liver,
MSD Pancreas, MSD Spleen), TCT beats the target-adaptive loss (TAL) and the marginal+exclusion
loss (ME) on the partially labeled test splits (92.26 vs 91.69 DSC) and on unseen fully
labeled sets (BTCV 80.55, WORD 82.97, AMOS 76.77); removing the consistency loss costs
accuracy (Table 5).

Here, per seed: the four partially labeled sets are KiTS19-, MSD-Liver-, MSD-Pancreas- and
MSD-Spleen-like phantoms of sites 1, 2, 3 and 0 (6 patients each: 4 train / 1 validation /
1 test), mixed with ``medsegzoo datalist --combine``'s function; the unseen set is a fully
labeled BTCV-like set of site 4 (6 patients). The supervised upper bound trains on the same
patients with all five organs labeled (BTCV layout, same seeds and sites). Every run is the
bundle's CPU recipe (``train.json`` + ``cpu.json`` as shipped, bf16) with only the
method switched. Run::

    .venv/bin/python benchmarks/tct_claim.py --seeds 0 1 2 --out benchmarks/output/tct_claim
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from claims import Arm, TestSet, describe_recipe, parse_claim_args, run_experiment, write_claim

from medsegzoo.data.combine import combine_datalists
from medsegzoo.data.datalist import SPLIT_KEYS, load_datalist, save_datalist
from medsegzoo.data.phantom_sets import make_phantom_set
from medsegzoo.recipes import get_recipe

PARTIAL_SETS = (("kits19", 1), ("msd_liver", 2), ("msd_pancreas", 3), ("msd_spleen", 0))
UNSEEN_SITE = 4
SIZE = 128

PAPER = """| method | CT partial-label test splits, mean DSC % | unseen BTCV | unseen WORD | unseen AMOS |
|---|---|---|---|---|
| TCT | 92.26 | 80.55 | 82.97 | 76.77 |
| TAL | 91.69 | | | |
| TCT w/o consistency (Table 5) | below TCT | | | |

(TCT paper, Tables 1-3 and 5; ME is reported below TAL there.)"""


def make_data(seed: int, root: Path, cases: int = 6) -> dict[str, tuple[Path, Path]]:
    """The partially labeled mix, the same patients fully labeled, and the unseen site."""
    partial, full = [], []
    for i, (layout, site) in enumerate(PARTIAL_SETS):
        patient_seed = 100 * seed + i
        partial.append(make_phantom_set(root / "partial" / layout, layout, cases, size=SIZE, site=site,
                                        seed=patient_seed, split="0.67/0.17/0.16"))
        full_set = make_phantom_set(root / "full" / f"btcv_site{site}", "btcv", cases, size=SIZE, site=site,
                                    seed=patient_seed, split="0.67/0.17/0.16")
        full.append(full_set)
        # the four fully labeled sets share the BTCV layout and so its case ids: name them by site
        data = load_datalist(full_set[1])
        for entries in (data.get(key, []) for key in SPLIT_KEYS):
            for entry in entries:
                entry["case_id"] = f"site{site}_{entry['case_id']}"
        save_datalist(data, full_set[1])
    mixes = {}
    for name, parts in (("partial", partial), ("full", full)):
        path = combine_datalists([(dl, ds) for ds, dl in parts], root / name / "datalist.json", root / name,
                                 name=f"tct_{name}_s{seed}")
        mixes[name] = (root / name, Path(path))
    mixes["unseen"] = make_phantom_set(root / "unseen", "btcv", cases, size=SIZE, site=UNSEEN_SITE,
                                       seed=100 * seed + 50, split=None)
    return mixes


ARMS = (
    Arm("TCT", "partial", {"method": "tct"}),
    Arm("TAL", "partial", {"method": "tal"}),
    Arm("ME", "partial", {"method": "me"}),
    Arm("TCT w/o consistency", "partial", {"method": "tct", "consistency": False}),
    Arm("supervised, full labels (upper bound)", "full", {"method": "tal"}),
)
TESTS = (TestSet("training sites (partial labels)", "partial", "test"), TestSet("unseen site 4 (BTCV-like)", "unseen", "training"))


def main(argv: list[str] | None = None) -> int:
    args = parse_claim_args(argv, __doc__.splitlines()[0], "benchmarks/output/tct_claim")
    recipe = get_recipe("tct")
    start = time.perf_counter()
    if args.report_only:
        import pandas as pd

        runs = pd.read_csv(args.out / "runs.csv")
    else:
        runs = run_experiment(recipe, ARMS, TESTS, args.seeds, make_data, args.out.resolve(),
                              bundles_dir=args.bundles_dir, overrides=args.overrides)
    setting = (f"Seeds {args.seeds}; {describe_recipe(recipe, args.bundles_dir, args.overrides)}; phantoms of "
               f"{SIZE} mm; partially labeled sets {PARTIAL_SETS} (layout, site), 6 patients each; unseen BTCV-like site "
               f"{UNSEEN_SITE}. Wall time {time.perf_counter() - start:.0f} s.")
    text = write_claim(args.out, "TCT vs TAL vs ME on partially labeled phantoms", setting, runs, PAPER,
                       "(filled in the bundle README after the run)")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
