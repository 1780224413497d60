"""The factorization machine of the design notes, on sparse binary rows.

    y_hat(x) = b + <w, x> + 1/2 * sum_f [ (x V)_f^2 - (x^2)(V^2)_f ]

Two forward paths give the same numbers: :meth:`FactorizationMachine.forward` on a
:class:`~fmadv.sparse.SparseBatch` (O(m k) work per row with m active features,
through sparse matrix products), and :meth:`FactorizationMachine.forward_dense` on
dense rows (plain autograd; the attacks differentiate it with respect to x).
A ranking batch (:class:`~fmadv.sparse.PairBatch`) is scored from its two sides, each
user's and each item's features summed once, never as one row per (user, item) pair.
"""

from __future__ import annotations

import torch
from torch import nn

from fmadv.models.fm_attack import exact_scores
from fmadv.sparse import PairBatch, SparseBatch, gather_rows, sparse_product
from fmadv.threat import Attackable, ThreatModel


class FactorizationMachine(Attackable, nn.Module):
    """Second-order factorization machine (Rendle, 2010).

    Parameters
    ----------
    n_features
        Size n of the one shared feature space.
    n_factors
        Number of latent factors per feature (the rank of the interaction matrix).
    init_std
        Standard deviation of the normal initialisation of the factors; the bias and
        the linear weights start at zero.
    generator
        Random generator for the initialisation (seeded by the caller for determinism).
    """

    def __init__(
        self,
        n_features: int,
        n_factors: int = 16,
        init_std: float = 0.01,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if n_features < 1 or n_factors < 1:
            raise ValueError(
                f"n_features and n_factors must be >= 1, got {n_features} and {n_factors}"
            )
        self.n_features = n_features
        self.n_factors = n_factors
        self.bias = nn.Parameter(torch.zeros(()))
        self.linear = nn.Parameter(torch.zeros(n_features))
        self.factors = nn.Parameter(
            torch.randn(n_features, n_factors, generator=generator) * init_std
        )

    #: Gradients only for the rows a batch uses (sparse COO tensors, for optimizers that
    #: update only those rows); the training loop sets it for a run with sparse updates.
    sparse_gradients: bool = False

    def forward(self, batch: SparseBatch | PairBatch) -> torch.Tensor:
        """Scores y_hat of the rows of a sparse batch, shape (batch,)."""
        self._check_width(batch.n_features)
        table = None if self.sparse_gradients else self.side_table()
        if isinstance(batch, PairBatch):
            users, items = self._sums_of(batch.users, table), self._sums_of(batch.items, table)
            return self.pair_scores(users, items, batch)
        return self.scores_from_sums(self._sums_of(batch, table))

    def _sums_of(self, batch: SparseBatch, table: torch.Tensor | None) -> torch.Tensor:
        """:meth:`side_sums` from the whole table, or (sparse gradients) from the rows of
        the features the batch touches."""
        if table is None:
            return self.side_sums(batch.local, self.side_table(batch.touched))
        return self.side_sums(batch, table)

    # -- the score from per-row sums -----------------------------------------------------
    # A row's score needs three sums over its features: s = x V, <w, x> and (x^2)(V^2),
    # kept side by side as one (rows x (k + 2)) tensor [s, <w, x>, (x^2)(V^2)].
    def side_table(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """[V, w, ||V_j||^2] per feature (or for the features ``rows`` only, with sparse
        gradients): one sparse product with it gives the sums."""
        V, w, norms = self._parameter_rows(rows)
        return torch.cat([V, w[:, None], norms[:, None]], 1)

    def _parameter_rows(self, rows: torch.Tensor | None):
        """(V, w, ||V_j||^2) of every feature, or of the features ``rows``."""
        if rows is None:
            return self.factors, self.linear, _squared_norms(self.factors)
        # The forward pass and the L2 penalty of one step gather the same rows: gather
        # them once, so that each table gets one sparse gradient, not a sum of two to
        # coalesce. The gathered rows serve while the rows, the parameters' versions
        # and the grad mode are unchanged, and until a backward pass goes through them.
        key = (self.factors._version, self.linear._version, torch.is_grad_enabled())
        cached = self.__dict__.get("_gathered")
        if cached is not None and cached[1] is rows and cached[0] == key:
            return cached[2]
        V = gather_rows(self.factors, rows)
        gathered = V, gather_rows(self.linear, rows), _squared_norms(V)
        if V.requires_grad:
            gathered[0].register_hook(self._forget_gathered)
        self.__dict__["_gathered"] = (key, rows, gathered)
        return gathered

    def _forget_gathered(self, grad: torch.Tensor) -> None:
        self.__dict__.pop("_gathered", None)

    def side_sums(self, batch: SparseBatch, table: torch.Tensor) -> torch.Tensor:
        """[x V, <w, x>, (x^2)(V^2)] of every row of ``batch``."""
        if batch.is_binary:  # x^2 = x: one product gives all three
            return sparse_product(batch.rows, batch.rows_t, table)
        first = sparse_product(batch.rows, batch.rows_t, table[:, :-1])
        return torch.cat([first, sparse_product(batch.squared, batch.squared_t, table[:, -1:])], 1)

    def scores_from_sums(self, sums: torch.Tensor) -> torch.Tensor:
        """b + <w, x> + 1/2 (||x V||^2 - (x^2)(V^2)) from :meth:`side_sums`."""
        return self.bias + self._own_part(sums)

    def _own_part(self, sums: torch.Tensor) -> torch.Tensor:
        k = self.n_factors
        return sums[:, k] + 0.5 * (sums[:, :k].square().sum(1) - sums[:, k + 1])

    def pair_scores(self, user_sums, item_sums, batch: PairBatch) -> torch.Tensor:
        """Scores of rows x_u + x_i from each side's sums: the two sides' own parts plus
        their interaction <x_u V, x_i V> (the sides share no feature)."""
        k = self.n_factors
        user, item = batch.user_of_row, batch.item_of_row
        cross = torch.linalg.vecdot(user_sums[user, :k], item_sums[item, :k])
        return self.bias + self._own_part(user_sums)[user] + self._own_part(item_sums)[item] + cross

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of dense rows x (batch x n); differentiable in x and in the parameters."""
        self._check_width(x.shape[-1])
        V = self.factors
        s = x @ V
        sq = x.square() @ V.square().sum(1)
        return self.bias + x @ self.linear + 0.5 * (s.square().sum(1) - sq)

    # -- what the attack core asks of a model (see fmadv.threat.Attackable) ------------
    def dense_view(self, batch: SparseBatch | PairBatch):
        """Dense rows and the scores as a function of them; on a :class:`PairBatch`, the
        users' features (over ``user_columns``), each shared by all of the user's rows."""
        if not isinstance(batch, PairBatch):
            return batch.to_dense(), self.forward_dense
        users = torch.from_numpy(batch.user_block.toarray()).to(batch.device, batch.dtype)
        table = self.side_table()
        own, items = table[batch.user_columns], self.side_sums(batch.items, table)

        def scores(x: torch.Tensor) -> torch.Tensor:
            user_sums = torch.cat([x @ own[:, :-1], x.square() @ own[:, -1:]], 1)
            return self.pair_scores(user_sums, items, batch)

        return users, scores

    def class_outputs(self, scores: torch.Tensor) -> torch.Tensor:
        """[-y_hat, y_hat]: class 1 wins when y_hat > 0."""
        return torch.stack([-scores, scores], 1)

    def class_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """{-1, +1} labels as class indices {0, 1}."""
        return (labels > 0).long()

    def exact_attack_scores(
        self,
        batch: SparseBatch | PairBatch,
        slope: torch.Tensor,
        ball: ThreatModel,
        lean_dtype: torch.dtype | None = None,
    ) -> torch.Tensor | None:
        """Closed-form scores after a sign or L2 step (see :mod:`fmadv.models.fm_attack`)."""
        return exact_scores(self, batch, slope, ball, lean_dtype)

    @torch.no_grad()
    def side_tables(self, user_rows, item_rows) -> tuple[torch.Tensor, torch.Tensor]:
        """Tables whose products are the scores of every (user, item) pair.

        With x = x_u + x_i (features of the user and of the item only),
        y_hat = [b + <w, x_u> + pair(x_u)] + [<w, x_i> + pair(x_i)] + <x_u V, x_i V>, where
        pair(z) = 1/2 (||z V||^2 - z^2 ||V||^2). The user table row is
        [x_u V, user part, 1] and the item row [x_i V, 1, item part], so that one
        (users x items) product gives whole scores.
        """
        return self.user_table(user_rows), self.item_table(item_rows)

    @torch.no_grad()
    def user_table(self, user_rows) -> torch.Tensor:
        """The user half of :meth:`side_tables`: [x_u V, user part, 1] per row."""
        part, vectors = self._side_parts(user_rows, with_bias=True)
        return torch.cat([vectors, part[:, None], torch.ones_like(part)[:, None]], 1)

    @torch.no_grad()
    def item_table(self, item_rows) -> torch.Tensor:
        """The item half of :meth:`side_tables`: [x_i V, 1, item part] per row."""
        part, vectors = self._side_parts(item_rows, with_bias=False)
        return torch.cat([vectors, torch.ones_like(part)[:, None], part[:, None]], 1)

    def _side_parts(self, rows, with_bias: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(b + <w, z> + pair(z), z V) for every CSR row z, the bias on the user side only."""
        device, table = self.bias.device, self.side_table()
        parts, vectors = [], []
        for start in range(0, rows.shape[0], 65536):
            sums = self.side_sums(SparseBatch(rows[start : start + 65536], device), table)
            parts.append(self._own_part(sums) + (self.bias if with_bias else 0))
            vectors.append(sums[:, : self.n_factors])
        return torch.cat(parts), torch.cat(vectors)

    def l2_penalty(
        self, batch: SparseBatch | PairBatch, reg_linear: float, reg_factors: float
    ) -> torch.Tensor:
        """Mean over the rows of reg_linear * sum w_i^2 + reg_factors * sum ||V_i||^2.

        The sums run over each row's active features, weighted by x_i^2 (1 on binary
        rows), as in libFM's per-example SGD regularisation: a feature is shrunk in
        proportion to how often it is seen, and rows the batch never touched are left
        alone (a dense weight decay would, under Adam, pull every rare feature to zero at
        full step size).
        """
        if reg_linear == 0 and reg_factors == 0:
            return self.bias.new_zeros(())
        if isinstance(batch, PairBatch):
            users = self._row_penalties(batch.users, reg_linear, reg_factors)
            items = self._row_penalties(batch.items, reg_linear, reg_factors)
            return (users[batch.user_of_row] + items[batch.item_of_row]).mean()
        return self._row_penalties(batch, reg_linear, reg_factors).mean()

    def _row_penalties(self, batch: SparseBatch, reg_linear, reg_factors) -> torch.Tensor:
        """sum_j x_j^2 (reg_linear w_j^2 + reg_factors ||V_j||^2) for every row."""
        rows = batch.touched if self.sparse_gradients else None
        _, w, norms = self._parameter_rows(rows)
        per_feature = reg_linear * w.square() + reg_factors * norms
        pattern = batch.local if self.sparse_gradients else batch
        return sparse_product(pattern.squared, pattern.squared_t, per_feature[:, None])[:, 0]

    def _check_width(self, width: int) -> None:
        if width != self.n_features:
            raise ValueError(
                f"rows have {width} features but the model was built for {self.n_features}"
            )


def _squared_norms(V: torch.Tensor) -> torch.Tensor:
    """||V_j||^2 per row (a product rather than a power: its backward is cheaper)."""
    return (V * V).sum(1)
