"""Robustness figures from scores before and after an attack (no model needed)."""

from __future__ import annotations

import numpy as np


def robustness_report(labels: np.ndarray, clean: np.ndarray, attacked: np.ndarray) -> dict:
    """Flip rate, error rates and margins before and after an attack.

    * ``flip_rate``: share of rows whose predicted class differs between x and x_adv;
    * ``clean_error`` / ``adversarial_error``: share of rows misclassified;
    * ``mean_margin_*``: mean of y * y_hat; ``inside_margin_*``: share with y * y_hat < 1.
    """
    labels = np.asarray(labels, np.float64)
    clean_sign = np.where(clean > 0, 1.0, -1.0)
    adv_sign = np.where(attacked > 0, 1.0, -1.0)
    return {
        "flip_rate": float(np.mean(clean_sign != adv_sign)),
        "clean_error": float(np.mean(clean_sign != labels)),
        "adversarial_error": float(np.mean(adv_sign != labels)),
        "mean_margin_clean": float(np.mean(labels * clean)),
        "mean_margin_adversarial": float(np.mean(labels * attacked)),
        "inside_margin_clean": float(np.mean(labels * clean < 1)),
        "inside_margin_adversarial": float(np.mean(labels * attacked < 1)),
    }
