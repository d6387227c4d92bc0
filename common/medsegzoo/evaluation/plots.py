"""PNG plots of evaluation results (matplotlib, Agg backend: no display needed).

* :func:`box_plot` — distribution of a metric per category (class or metadata group),
  one box per algorithm side by side; whiskers at 1.5 IQR as in Touchstone's figures.
* :func:`significance_map_plot` — Touchstone significance map: yellow where the x-axis
  algorithm is significantly better than the y-axis algorithm, blue otherwise.
* :func:`bootstrap_blob_plot` — ranking stability: blob area proportional to how often an
  algorithm took a rank over the bootstrap resamples, black cross at the median rank,
  black line over the 95 % interval.
* :func:`matrix_heatmap` — a train x test (or any) matrix with the values written in the
  cells (A-Eval).

Every function writes its PNG atomically and returns the path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # set before pyplot is imported: reports run on headless machines

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from medsegzoo.evaluation.stats import BootstrapRanking
from medsegzoo.utils import atomic_path

__all__ = ["bootstrap_blob_plot", "box_plot", "matrix_heatmap", "save_figure", "significance_map_plot"]

DPI = 120
# Touchstone's significance maps: blue = no significant superiority, yellow = significant
SIGNIFICANCE_COLORS = ("#3b4cc0", "#f6d32d")
SAME_ALGORITHM_COLOR = "#d9d9d9"
# box plots also show every case as a dot when a box holds at most this many
MAX_POINTS_SHOWN = 30


def save_figure(fig: plt.Figure, path: str | os.PathLike) -> Path:
    """Save ``fig`` as PNG atomically, close it and return the path."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def _wrap(label: str, width: int = 14) -> str:
    # long class names (portal_vein_and_splenic_vein) would overlap their neighbours
    words = str(label).replace("_", " ").split(" ")
    lines, current = [], ""
    for w in words:
        if current and len(current) + 1 + len(w) > width:
            lines.append(current)
            current = w
        else:
            current = f"{current} {w}".strip()
    lines.append(current)
    return "\n".join(lines)


# average width of one character of the 8-point tick labels, in inches (DejaVu Sans)
_CHAR_WIDTH_IN = 0.07


def _set_category_labels(ax: plt.Axes, cats: Sequence[str], fig_width_in: float) -> None:
    """Category names under the x axis: wrapped, and slanted when they would still collide."""
    wrapped = [_wrap(c) for c in cats]
    widest = max((len(line) for w in wrapped for line in w.split("\n")), default=0)
    room_in = max(fig_width_in - 1.5, 1.0) / max(len(cats), 1)  # axes width shared by the categories
    if widest * _CHAR_WIDTH_IN > 0.9 * room_in:
        names = [str(c).replace("_", " ") for c in cats]
        ax.set_xticklabels(names, fontsize=8, rotation=35, ha="right", rotation_mode="anchor")
    else:
        ax.set_xticklabels(wrapped, fontsize=8)


def box_plot(
    data: pd.DataFrame,
    value: str,
    by: str,
    path: str | os.PathLike,
    hue: str | None = None,
    title: str = "",
    ylabel: str | None = None,
    order: Sequence[str] | None = None,
    hue_order: Sequence[str] | None = None,
) -> Path:
    """Box plot of ``value`` per category ``by``, one box per ``hue`` level side by side.

    Args:
        data: long table with columns ``value``, ``by`` and ``hue``.
        value: numeric column (NaN left out).
        by: category on the x axis (e.g. ``class`` or a metadata column).
        path: PNG to write.
        hue: column with one box per level (e.g. ``algorithm``); None: one box per category.
        title: figure title.
        ylabel: y-axis label (default: ``value``).
        order: category order (default: first appearance).
        hue_order: hue order.

    Returns:
        The written path.
    """
    cats = list(order) if order is not None else list(dict.fromkeys(data[by].astype(str)))
    hues = [None] if hue is None else (list(hue_order) if hue_order is not None else list(dict.fromkeys(data[hue].astype(str))))
    width = 0.8 / len(hues)
    # wide enough to separate the boxes and their names, capped so that many algorithms x
    # classes stay readable
    fig, ax = plt.subplots(figsize=(min(16.0, max(5.0, (0.3 * len(hues) + 0.25) * len(cats) + 2.5)), 4.5))
    colors = plt.get_cmap("tab10" if len(hues) <= 10 else "tab20")
    handles = []
    for j, h in enumerate(hues):
        sub = data if h is None else data[data[hue].astype(str) == h]
        series = [sub.loc[sub[by].astype(str) == c, value].dropna().to_numpy(dtype=float) for c in cats]
        pos = np.arange(len(cats)) + (j - (len(hues) - 1) / 2) * width
        keep = [i for i, s in enumerate(series) if s.size]
        if not keep:
            continue
        bp = ax.boxplot(
            [series[i] for i in keep],
            positions=pos[keep],
            widths=width * 0.85,
            patch_artist=True,
            whis=1.5,
            # outliers of a box whose cases are drawn as dots would appear twice
            showfliers=any(series[i].size > MAX_POINTS_SHOWN for i in keep),
            flierprops={"marker": ".", "markersize": 3, "alpha": 0.6},
            medianprops={"color": "black"},
        )
        for patch in bp["boxes"]:
            patch.set_facecolor(colors(j % colors.N))
            patch.set_alpha(0.75)
        # a box of a handful of cases hides how few they are: draw the cases themselves too
        jitter = np.random.default_rng(j)  # fixed: the same table gives the same picture
        for i in keep:
            if series[i].size <= MAX_POINTS_SHOWN:
                x = pos[i] + jitter.uniform(-0.25, 0.25, series[i].size) * width
                ax.scatter(x, series[i], s=7, color="black", alpha=0.5, zorder=3, linewidths=0)
        handles.append((bp["boxes"][0], h))
    ax.set_xticks(np.arange(len(cats)))
    _set_category_labels(ax, cats, fig.get_figwidth())
    ax.set_xlim(-0.6, len(cats) - 0.4)
    ax.set_ylabel(ylabel or value)
    ax.set_xlabel(str(by).replace("_", " "))
    ax.grid(axis="y", alpha=0.3)
    if title:
        ax.set_title(title)
    if hue is not None and handles:
        ax.legend(
            [p for p, _ in handles], [str(n) for _, n in handles],
            fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
        )
    return save_figure(fig, path)


def significance_map_plot(matrix: pd.DataFrame, path: str | os.PathLike, title: str = "") -> Path:
    """Touchstone significance map from a boolean matrix (rows = y axis, columns = x axis).

    Cell ``[row, column]`` True (yellow) means the column (x-axis) algorithm is
    significantly better than the row (y-axis) algorithm.
    """
    k = len(matrix)
    size = max(3.5, 0.45 * k + 2)
    fig, ax = plt.subplots(figsize=(size + 0.8, size))
    values = matrix.to_numpy(dtype=float)
    # an algorithm is never compared with itself: grey, so the diagonal does not read as "not significant"
    same = np.asarray([[r == c for c in matrix.columns] for r in matrix.index], dtype=bool)
    cmap = ListedColormap(SIGNIFICANCE_COLORS).with_extremes(bad=SAME_ALGORITHM_COLOR)
    ax.imshow(np.ma.masked_array(values, mask=same), cmap=cmap, vmin=0, vmax=1)
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels([str(c) for c in matrix.columns], rotation=60, ha="right", fontsize=8)
    ax.set_yticklabels([str(i) for i in matrix.index], fontsize=8)
    ax.set_xticks(np.arange(-0.5, k), minor=True)
    ax.set_yticks(np.arange(-0.5, k), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel("algorithm x (is it better ...)")
    ax.set_ylabel("algorithm y (... than this one?)")
    ax.legend(
        [Patch(color=SIGNIFICANCE_COLORS[1]), Patch(color=SIGNIFICANCE_COLORS[0]), Patch(color=SAME_ALGORITHM_COLOR)],
        ["x significantly better than y", "not significantly better", "same algorithm"],
        loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False,
    )
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def bootstrap_blob_plot(ranking: BootstrapRanking, path: str | os.PathLike, title: str = "") -> Path:
    """Blob plot of bootstrap ranks (challengeR / Touchstone style), best algorithm first."""
    summary = ranking.summary()
    freq = ranking.frequencies()
    algos = list(summary["algorithm"])
    k = len(ranking.algorithms)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * k + 2), max(3.0, 0.4 * k + 2)))
    for x, algo in enumerate(algos):
        f = freq.loc[algo]
        ranks = np.asarray(f.index, dtype=float)
        ax.scatter(np.full(k, x), ranks, s=f.to_numpy() * 600, color="#4c72b0", alpha=0.55, edgecolors="none")
        row = summary.iloc[x]
        ax.plot([x, x], [row["rank_ci_low"], row["rank_ci_high"]], color="black", linewidth=1.2)
        ax.plot([x], [row["median_rank"]], marker="x", color="black", markersize=8, mew=2)
    ax.set_xticks(range(k))
    ax.set_xticklabels(algos, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center", fontsize=8)
    ax.set_yticks(range(1, k + 1))
    ax.set_ylim(k + 0.7, 0.3)  # rank 1 at the top
    ax.set_xlim(-0.7, k - 0.3)
    ax.set_ylabel("rank")
    ax.grid(axis="y", alpha=0.3)
    note = (
        f"{ranking.ranks.shape[0]} bootstrap samples of {ranking.n_cases} cases; blob area = share of samples\n"
        "at that rank, x = median rank, line = 95 % interval"
    )
    ax.set_title(f"{title}\n{note}" if title else note, fontsize=9)
    return save_figure(fig, path)


def matrix_heatmap(
    values: pd.DataFrame,
    path: str | os.PathLike,
    title: str = "",
    fmt: str = "{:.1f}",
    cmap: str = "viridis",
    xlabel: str = "test set",
    ylabel: str = "training set",
    vmin: float | None = None,
    vmax: float | None = None,
) -> Path:
    """Heatmap of a numeric matrix with every value written in its cell (NaN cells grey, "n/a")."""
    arr = values.to_numpy(dtype=float)
    rows, cols = arr.shape
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * cols + 2.5), max(3.0, 0.6 * rows + 1.8)))
    cm = plt.get_cmap(cmap).with_extremes(bad="#d9d9d9")
    finite = arr[np.isfinite(arr)]
    lo = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    if hi <= lo:
        hi = lo + 1.0
    im = ax.imshow(np.ma.masked_invalid(arr), cmap=cm, vmin=lo, vmax=hi, aspect="auto")
    for i in range(rows):
        for j in range(cols):
            v = arr[i, j]
            if np.isfinite(v):
                r, g, b, _ = cm((v - lo) / (hi - lo))
                color = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
                ax.text(j, i, fmt.format(v), ha="center", va="center", color=color, fontsize=9)
            else:
                ax.text(j, i, "n/a", ha="center", va="center", color="#555555", fontsize=8)
    ax.set_xticks(range(cols))
    ax.set_yticks(range(rows))
    ax.set_xticklabels([_wrap(c) for c in values.columns], fontsize=8)
    ax.set_yticklabels([str(i) for i in values.index], fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.xaxis.set_label_position("top")
    ax.xaxis.tick_top()
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if title:
        ax.set_title(title, pad=28)
    return save_figure(fig, path)
