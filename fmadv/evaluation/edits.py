"""An FM classifier under whole-feature edits: empirical flip rates beside certified shares.

For each budget b the greedy edit attack (:func:`~fmadv.models.fm_edits.greedy_edits`)
gives what an attacker achieves, and the certificate
(:func:`~fmadv.models.fm_edits.edit_certificate`) what no attacker can exceed:

- ``flip_rate``: the share of rows whose predicted class the attack on that prediction
  changes; ``certified_share``: the share whose prediction no b edits can change. Their
  gap, ``1 - flip_rate - certified_share``, is the rows neither side settles.
- ``adversarial_error``: the error rate after the attack against the true labels;
  ``certified_accuracy``: the share of rows classified right that no b edits can make
  wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch

from fmadv.errors import ConfigError
from fmadv.evaluation.predict import in_batches
from fmadv.models.fm import FactorizationMachine
from fmadv.models.fm_edits import edit_certificate, greedy_edits
from fmadv.sparse import SparseBatch
from fmadv.threat import EditThreat


def edit_robustness(
    model: FactorizationMachine,
    X: sp.csr_matrix,
    y: np.ndarray,
    threat: EditThreat,
    batch_size: int = 4096,
) -> dict[str, float]:
    """The figures of the module's docstring at ``threat.budget`` edits."""
    labels = np.where(np.asarray(y) > 0, 1.0, -1.0)

    def figures(rows: slice, device: torch.device):
        part = X[rows]
        sign = torch.from_numpy(labels[rows]).to(device, torch.float32)
        with torch.no_grad():
            clean = model(SparseBatch(part, device))
        predicted = torch.where(clean > 0, 1.0, -1.0)
        against_prediction = greedy_edits(model, part, -predicted, threat).scores
        against_label = greedy_edits(model, part, -sign, threat).scores
        reach_prediction = edit_certificate(model, part, -predicted, threat)
        reach_label = edit_certificate(model, part, -sign, threat)
        return tuple(
            t.cpu().numpy()
            for t in (
                clean, predicted, against_prediction, against_label, reach_prediction,
                reach_label,
            )
        )  # fmt: skip

    parts = in_batches(model, X.shape[0], batch_size, figures)
    clean, predicted, on_prediction, on_label, reach_prediction, reach_label = (
        np.concatenate(column) for column in zip(*parts, strict=True)
    )
    flipped = np.where(on_prediction > 0, 1.0, -1.0) != predicted
    # A prediction stays when its margin exceeds the most any b edits move the score.
    margin = clean * predicted
    certified = margin - reach_prediction > 0
    correct = clean * labels > 0
    certified_right = clean * labels - reach_label > 0
    return {
        "budget": threat.budget,
        "flip_rate": float(flipped.mean()),
        "certified_share": float(certified.mean()),
        "undecided_share": float((~flipped & ~certified).mean()),
        "clean_error": float(1 - correct.mean()),
        "adversarial_error": float((on_label * labels <= 0).mean()),
        "certified_accuracy": float(certified_right.mean()),
    }


def edit_threat(feature_map, fields: Sequence[str], budget: int) -> EditThreat:
    """The edits of the named fields of ``feature_map``: each feature of a multi-valued
    field toggles, each single-valued field changes value."""
    unknown = [name for name in fields if name not in feature_map.field_names]
    if unknown or not fields:
        raise ConfigError(
            f"edits name fields of the data: got {', '.join(unknown) or 'none'}; the "
            f"fields are {', '.join(feature_map.field_names)}"
        )
    toggles, choices = [], []
    for name in fields:
        field = feature_map.field(name)
        if field.multi:
            toggles.extend(range(field.offset, field.offset + field.size))
        else:
            choices.append((field.offset, field.size))
    return EditThreat(budget, tuple(toggles), tuple(choices))


def edit_curve(
    model: FactorizationMachine,
    X: sp.csr_matrix,
    y: np.ndarray,
    threat: EditThreat,
    budgets: Sequence[int],
) -> list[dict[str, float]]:
    """:func:`edit_robustness` at each budget, the editable features of ``threat``."""
    return [
        edit_robustness(model, X, y, EditThreat(int(b), threat.toggles, threat.choices))
        for b in budgets
    ]
