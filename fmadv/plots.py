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
    """Flip rate and adversarial error against alpha, one line per model or setting."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for label, rows in curves.items():
        alphas = [row["alpha"] for row in rows]
        axes[0].plot(alphas, [row["flip_rate"] for row in rows], marker="o", label=label)
        axes[1].plot(alphas, [row["adversarial_error"] for row in rows], marker="o", label=label)
    for axis, name in zip(axes, ("flip rate", "adversarial error"), strict=True):
        axis.set_xscale("symlog", linthresh=1e-3)
        axis.set_xlabel("alpha")
        axis.set_ylabel(name)
        axis.grid(alpha=0.3)
    axes[0].legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda temp: fig.savefig(temp, format="png", dpi=120))
    plt.close(fig)
