"""PNG figures for the reports (matplotlib without a display)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from fmadv.io import atomic_write


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_flip_curves(
    curves: Mapping[str, Sequence[dict]], path: str | Path, title: str = ""
) -> None:
    """Flip rate and adversarial error against the budget eps, one line per model or setting."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for label, rows in curves.items():
        budgets = [row["eps"] for row in rows]
        axes[0].plot(budgets, [row["flip_rate"] for row in rows], marker="o", label=label)
        axes[1].plot(budgets, [row["adversarial_error"] for row in rows], marker="o", label=label)
    for axis, name in zip(axes, ("flip rate", "adversarial error"), strict=True):
        axis.set_xscale("symlog", linthresh=1e-3)
        axis.set_xlabel("eps")
        axis.set_ylabel(name)
        axis.grid(alpha=0.3)
    axes[0].legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda temp: fig.savefig(temp, format="png", dpi=120))
    plt.close(fig)


def plot_edit_curves(
    curves: Mapping[str, Sequence[dict]], path: str | Path, title: str = ""
) -> None:
    """Against the number of edits, one colour per model: the share of rows the greedy
    attack flips (solid) and the share not certified (dashed, an upper bound on what any
    attack flips); the band between them is undecided."""
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(6.5, 4))
    for number, (label, curve) in enumerate(curves.items()):
        colour = f"C{number}"
        budgets = [row["budget"] for row in curve]
        flips = [row["flip_rate"] for row in curve]
        uncertified = [1 - row["certified_share"] for row in curve]
        axis.plot(budgets, flips, marker="o", color=colour, label=f"{label}: flipped")
        axis.plot(budgets, uncertified, "--", marker="s", color=colour,
                  label=f"{label}: not certified")  # fmt: skip
        axis.fill_between(budgets, flips, uncertified, color=colour, alpha=0.1)
    axis.set_xlabel("edits per row (b)")
    axis.set_ylabel("share of rows")
    axis.set_ylim(0, 1)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    if title:
        axis.set_title(title)
    fig.tight_layout()
    atomic_write(path, lambda temp: fig.savefig(temp, format="png", dpi=120))
    plt.close(fig)


def plot_overlap_histograms(
    overlaps: Mapping[tuple[str, str], Sequence[float]], k: int, path
) -> None:
    """One histogram of per-user top-k overlap per pair of models."""
    plt = _pyplot()
    pairs = list(overlaps)
    cols = min(3, len(pairs))
    rows = (len(pairs) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    bins = [(i - 0.5) / k for i in range(k + 2)]
    for axis, pair in zip(axes.ravel(), pairs, strict=False):
        axis.hist(overlaps[pair], bins=bins, color="tab:blue", alpha=0.8)
        axis.set_title(f"{pair[0]} vs {pair[1]}", fontsize=9)
        axis.set_xlabel(f"overlap of the top-{k} lists")
        axis.set_ylabel("users")
    for axis in axes.ravel()[len(pairs) :]:
        axis.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)


def plot_metric_bars(
    models, path, metrics: Sequence[str] = ("ndcg", "recall", "hit_rate", "coverage", "stability")
) -> None:
    """Grouped bars: one group per metric, one bar per model (models: DataFrame by model)."""
    import numpy as np

    plt = _pyplot()
    shown = [c for c in models.columns if any(c == m or c.startswith(m + " ") for m in metrics)]
    fig, axis = plt.subplots(figsize=(2 + 1.6 * len(shown), 4))
    width = 0.8 / max(len(models), 1)
    for i, (name, row) in enumerate(models.iterrows()):
        positions = np.arange(len(shown)) + i * width
        axis.bar(positions, [row[m] for m in shown], width, label=str(name))
    axis.set_xticks(np.arange(len(shown)) + width * (len(models) - 1) / 2, shown)
    axis.set_ylim(0, 1)
    axis.legend(fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)


def plot_accuracy_curves(curves: Mapping[str, Sequence[dict]], path, title: str = "") -> None:
    """Accuracy against the attack budget, one line per attack (or model)."""
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(6, 4))
    for label, points in curves.items():
        axis.plot(
            [p["eps"] for p in points], [p["accuracy"] for p in points], marker="o", label=label
        )
    axis.set_xlabel("L2 norm of the perturbation")
    axis.set_ylabel("accuracy")
    axis.set_ylim(0, 1)
    axis.grid(alpha=0.3)
    axis.legend()
    if title:
        axis.set_title(title)
    fig.tight_layout()
    atomic_write(path, lambda temp: fig.savefig(temp, format="png", dpi=120))
    plt.close(fig)
