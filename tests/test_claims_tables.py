"""The tables of the paper-claim experiments (``benchmarks/claims.py``) on hand-made runs.

These tables are what the results pages quote, so their medians, ranges and missing values are
checked against values computed by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
claims = pytest.importorskip("claims")

from medsegzoo.data.datalist import load_datalist  # noqa: E402


def test_median_range_in_percent_leaves_out_unmeasured_values() -> None:
    assert claims.median_range([0.5, 0.9, 0.7]) == "70.0 [50.0, 90.0]"
    assert claims.median_range([0.5, float("nan"), 0.7]) == "60.0 [50.0, 70.0]"  # median of the two measured
    assert claims.median_range([float("nan")]) == "-"
    assert claims.median_range([0.25, 0.75], scale=1.0) == "0.5 [0.2, 0.8]"


def test_extra_cells_count_yes_no_values_and_summarise_numbers() -> None:
    assert claims.extra_cell([True, False, True]) == "2 of 3 seeds"
    assert claims.extra_cell([True, float("nan")]) == "1 of 1 seeds"
    assert claims.extra_cell([0.5, 1.0, 0.75]) == "0.75 [0.50, 1.00]"
    assert claims.extra_cell([float("nan"), float("nan")]) == "-"


def test_claim_table_has_one_row_per_arm_and_the_per_seed_values() -> None:
    runs = pd.DataFrame([
        {"arm": "A", "seed": 0, "test_set": "held-out", "dsc": 0.80, "extension ok": True},
        {"arm": "A", "seed": 1, "test_set": "held-out", "dsc": 0.90, "extension ok": True},
        {"arm": "A", "seed": 2, "test_set": "held-out", "dsc": 0.70, "extension ok": False},
        {"arm": "B", "seed": 0, "test_set": "held-out", "dsc": 0.60, "extension ok": float("nan")},
    ])
    lines = claims.claim_tables(runs, ["extension ok"]).splitlines()
    assert lines[2] == "| A | 80.0 [70.0, 90.0] | 2 of 3 seeds |"
    assert lines[3] == "| B | 60.0 [60.0, 60.0] | - |"
    assert "| A | 2 | 70.0 |" in lines and "| B | 0 | 60.0 |" in lines


def test_prefix_case_ids_makes_sets_of_one_layout_combinable(tmp_path: Path) -> None:
    from medsegzoo.data.combine import combine_datalists
    from medsegzoo.data.phantom_sets import make_phantom_set
    from medsegzoo.errors import DataValidationError

    sets = [make_phantom_set(tmp_path / f"btcv_{site}", "btcv", 2, size=32, site=site, seed=site, split="0.5/0/0.5")
            for site in (0, 1)]
    with pytest.raises(DataValidationError, match="is also in"):  # one layout, the same case ids
        combine_datalists([(dl, ds) for ds, dl in sets], tmp_path / "mix.json", tmp_path)
    before = load_datalist(sets[1][1])
    for (_, datalist), site in zip(sets, (0, 1)):
        claims.prefix_case_ids(datalist, f"site{site}_")
    after = load_datalist(sets[1][1])
    assert [e["case_id"] for e in after["training"]] == [f"site1_{e['case_id']}" for e in before["training"]]
    assert [e["image"] for e in after["training"]] == [e["image"] for e in before["training"]]  # nothing else changes
    mix = load_datalist(combine_datalists([(dl, ds) for ds, dl in sets], tmp_path / "mix.json", tmp_path))
    assert len(mix["training"]) == 2 and len(mix["test"]) == 2
