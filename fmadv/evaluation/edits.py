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
    return edit_curve(model, X, y, threat, [threat.budget], batch_size)[0]


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
    batch_size: int = 4096,
) -> list[dict[str, float]]:
    """:func:`edit_robustness` at each of ``budgets`` (over the editable features of
    ``threat``), from one attack and one certificate per direction at the largest: the
    greedy attack's first b edits are its b-edit attack, and the certificate's b largest
    terms are its b-edit bound."""
    budgets = [int(b) for b in budgets]
    largest = EditThreat(max(budgets), threat.toggles, threat.choices)
    labels = np.where(np.asarray(y) > 0, 1.0, -1.0)

    def figures(rows: slice, device: torch.device):
        part = X[rows]
        sign = torch.from_numpy(labels[rows]).to(device, torch.float32)
        with torch.no_grad():
            clean = model(SparseBatch(part, device))
        predicted = torch.where(clean > 0, 1.0, -1.0)
        return tuple(
            t.cpu().numpy()
            for t in (
                clean, predicted,
                greedy_edits(model, part, -predicted, largest).path,
                greedy_edits(model, part, -sign, largest).path,
                edit_certificate(model, part, -predicted, largest, every_budget=True),
                edit_certificate(model, part, -sign, largest, every_budget=True),
            )
        )  # fmt: skip

    parts = in_batches(model, X.shape[0], batch_size, figures)
    clean, predicted, on_prediction, on_label, reach_prediction, reach_label = (
        np.concatenate(column) for column in zip(*parts, strict=True)
    )
    correct = clean * labels > 0
    points = []
    for b in budgets:
        flipped = np.where(on_prediction[:, b] > 0, 1.0, -1.0) != predicted
        # A prediction stays when its margin exceeds the most any b edits move the score.
        certified = clean * predicted - reach_prediction[:, b] > 0
        points.append({
            "budget": b,
            "flip_rate": float(flipped.mean()),
            "certified_share": float(certified.mean()),
            "undecided_share": float((~flipped & ~certified).mean()),
            "clean_error": float(1 - correct.mean()),
            "adversarial_error": float((on_label[:, b] * labels <= 0).mean()),
            "certified_accuracy": float((clean * labels - reach_label[:, b] > 0).mean()),
        })  # fmt: skip
    return points
