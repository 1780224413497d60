"""Does a history field help the ranking FM? (MovieLens-100K)

    python eval/history_field.py --data-dir ../shared/data

SVD++ and libFM's grouped implicit features describe a user also by the items they
interacted with. Here the user's liked training items join the user's features as one
more field, ``history`` (one feature per item), in three forms:

- ``binary``: 1 for each liked item;
- ``sqrt``: 1 / sqrt(n) for each of the user's n liked items (SVD++'s normalisation);
- ``sqrt, positive left out``: the same, but in each training group the positive item is
  taken out of the user's history (as FISM does), so that the model cannot learn to
  score an item by finding it in the history: at test time the relevant items never are.

Fold u1 with genre, gender, age and occupation, the ranking FM at its defaults, the
epoch chosen by validation NDCG@10. Prints validation and test NDCG@10 per variant and
seed, and writes ``history_field.csv`` into ``--out``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from common import seed_cells, seeded_parser, u1

import fmadv.estimators.ranker as ranker_module
from fmadv.data.features import FeatureMap, Field
from fmadv.estimators.ranker import FMRanker
from fmadv.recommend import Interactions
from fmadv.training.ranking import GroupBatches, HeldOutRanking

HERE = Path(__file__).resolve().parent
VARIANTS = ("none", "binary", "sqrt", "sqrt, positive left out")


def with_history(interactions: Interactions, scaled: bool) -> int:
    """Add the ``history`` field to ``interactions`` in place; its first feature."""
    fmap = interactions.feature_map
    offset = fmap.n_features
    names = tuple(str(item) for item in interactions.items)
    interactions.feature_map = FeatureMap([*fmap.fields, Field("history", names, offset, True)])
    history = sp.csr_matrix(interactions.liked, dtype=np.float32)
    history.data[:] = 1
    if scaled:
        counts = np.asarray(history.sum(1)).ravel().clip(1)
        history = sp.diags((1 / np.sqrt(counts)).astype(np.float32)) @ history
    n_items = interactions.n_items
    interactions.user_features = sp.hstack([interactions.user_features, history]).tocsr()
    empty = sp.csr_matrix((n_items, n_items), dtype=np.float32)
    interactions.item_features = sp.hstack([interactions.item_features, empty]).tocsr()
    interactions.user_fields = (*interactions.user_fields, "history")
    return offset


class LeaveOutBatches(GroupBatches):
    """Group batches whose user rows lack the group's positive item in the history."""

    history_offset = 0  # the first history feature
    item_of_feature = np.zeros(0, np.int64)  # the item index of each item-id feature

    def __call__(self, rng, device):
        for batch, labels in super().__call__(rng, device):
            size = len(labels) // batch.n_users
            positives = batch.items.csr[batch.item_of_row.cpu().numpy()[::size]]
            own = self.item_of_feature[positives.indices]
            own = own[own >= 0] + self.history_offset  # one item-id feature per row
            users = batch.users.csr.tolil()
            users[np.arange(batch.n_users), own] = 0
            users = sp.csr_matrix(users)
            users.eliminate_zeros()
            yield batch.with_users(users), labels


def item_of_feature(interactions: Interactions) -> np.ndarray:
    span = interactions.feature_map.field_slice("item")
    lookup = np.full(interactions.feature_map.n_features, -1, np.int64)
    ids = sp.csr_matrix(interactions.item_features[:, span])
    lookup[ids.indices + span.start] = np.repeat(np.arange(ids.shape[0]), np.diff(ids.indptr))
    return lookup


def main() -> None:
    args = seeded_parser(__doc__, HERE / "results" / "edits").parse_args()
    rows = []
    for seed in args.seeds:
        splits = u1(args.data_dir, seed)
        for variant in VARIANTS:
            interactions = Interactions.from_splits(splits)
            if variant != "none":
                offset = with_history(interactions, scaled=variant != "binary")
            # The ranker builds its batch source itself: the leave-out variant swaps it.
            leave_out = variant.endswith("left out")
            if leave_out:
                LeaveOutBatches.history_offset = offset
                LeaveOutBatches.item_of_feature = item_of_feature(interactions)
            ranker_module.GroupBatches = LeaveOutBatches if leave_out else GroupBatches
            started = time.process_time()
            model = FMRanker(random_state=seed, allow_real_valued=True)
            model.fit(interactions, valid=splits.valid)
            seconds = time.process_time() - started
            ndcg = {}
            for name in ("valid", "test"):
                held_out = HeldOutRanking(
                    interactions.user_features, interactions.item_features, interactions.seen,
                    interactions.relevant(getattr(splits, name)), 10,
                )  # fmt: skip
                ndcg[name] = held_out(model.model_)["ndcg"]
            rows.append({"variant": variant, "seed": seed, "valid_ndcg": ndcg["valid"],
                         "test_ndcg": ndcg["test"], "train_cpu_s": seconds})  # fmt: skip
            print(f"{variant:26s} seed {seed}: valid NDCG@10 {ndcg['valid']:.4f}, test "
                  f"{ndcg['test']:.4f}, {seconds:.0f} CPU s", flush=True)  # fmt: skip
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "history_field.csv", index=False)
    print("\n| history field | valid NDCG@10 (seeds) | test NDCG@10 (seeds) |")
    print("|---|---|---|")
    for variant, group in table.groupby("variant", sort=False):
        valid, test = seed_cells(group.valid_ndcg, 4), seed_cells(group.test_ndcg, 4)
        print(f"| {variant} | {valid} | {test} |")


if __name__ == "__main__":
    main()
