"""The factorization machine of the design notes, on sparse binary rows.

    y_hat(x) = b + <w, x> + 1/2 * sum_f [ (x V)_f^2 - (x^2)(V^2)_f ]

Two forward paths give the same numbers: :meth:`FactorizationMachine.forward` on a
:class:`~fmadv.sparse.SparseBatch` (O(m k) work per row with m active features,
through sparse matrix products), and :meth:`FactorizationMachine.forward_dense` on
dense rows (plain autograd; the attacks differentiate it with respect to x).
"""

from __future__ import annotations

import torch
from torch import nn

from fmadv.models.fm_attack import exact_scores
from fmadv.sparse import SparseBatch, sparse_product
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

    def forward(self, batch: SparseBatch) -> torch.Tensor:
        """Scores y_hat of the rows of a sparse batch, shape (batch,)."""
        self._check_width(batch.n_features)
        V, w = self.factors, self.linear
        norms = V.square().sum(1, keepdim=True)
        if batch.is_binary:
            # x^2 = x on binary rows: one product gives s = xV, <w, x> and (x^2)(V^2).
            z = sparse_product(batch.rows, batch.rows_t, torch.cat([V, w[:, None], norms], 1))
            s, lin, sq = z[:, : self.n_factors], z[:, self.n_factors], z[:, self.n_factors + 1]
        else:
            z = sparse_product(batch.rows, batch.rows_t, torch.cat([V, w[:, None]], 1))
            s, lin = z[:, : self.n_factors], z[:, self.n_factors]
            sq = sparse_product(batch.squared, batch.squared_t, norms)[:, 0]
        return self.bias + lin + 0.5 * (s.square().sum(1) - sq)

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of dense rows x (batch x n); differentiable in x and in the parameters."""
        self._check_width(x.shape[-1])
        V = self.factors
        s = x @ V
        sq = x.square() @ V.square().sum(1)
        return self.bias + x @ self.linear + 0.5 * (s.square().sum(1) - sq)

    # -- what the attack core asks of a model (see fmadv.threat.Attackable) ------------
    def dense_inputs(self, batch: SparseBatch) -> torch.Tensor:
        return batch.to_dense()

    def class_outputs(self, scores: torch.Tensor) -> torch.Tensor:
        """[-y_hat, y_hat]: class 1 wins when y_hat > 0."""
        return torch.stack([-scores, scores], 1)

    def class_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """{-1, +1} labels as class indices {0, 1}."""
        return (labels > 0).long()

    def exact_attack_scores(
        self,
        batch: SparseBatch,
        rho: torch.Tensor,
        ball: ThreatModel,
        lean_dtype: torch.dtype | None = None,
    ) -> torch.Tensor | None:
        """Closed-form scores after a sign or L2 step (see :mod:`fmadv.models.fm_attack`)."""
        return exact_scores(self, batch, rho, ball, lean_dtype)

    @torch.no_grad()
    def side_tables(self, user_rows, item_rows) -> tuple[torch.Tensor, torch.Tensor]:
        """Tables whose products are the scores of every (user, item) pair.

        With x = x_u + x_i (features of the user and of the item only),
        y_hat = [b + <w, x_u> + pair(x_u)] + [<w, x_i> + pair(x_i)] + <x_u V, x_i V>, where
        pair(z) = 1/2 (||z V||^2 - z^2 ||V||^2). The user table row is
        [x_u V, user part, 1] and the item row [x_i V, 1, item part], so that one
        (users x items) product gives whole scores.
        """
        user_part, user_vectors = self._side_parts(user_rows, with_bias=True)
        item_part, item_vectors = self._side_parts(item_rows, with_bias=False)
        users = torch.cat(
            [user_vectors, user_part[:, None], torch.ones_like(user_part)[:, None]], 1
        )
        items = torch.cat(
            [item_vectors, torch.ones_like(item_part)[:, None], item_part[:, None]], 1
        )
        return users, items

    def _side_parts(self, rows, with_bias: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(b + <w, z> + pair(z), z V) for every CSR row z, the bias on the user side only."""
        device = self.bias.device
        parts, vectors = [], []
        for start in range(0, rows.shape[0], 65536):
            batch = SparseBatch(rows[start : start + 65536], device)
            parts.append(self(batch) - (0 if with_bias else self.bias))
            vectors.append(batch.rows @ self.factors)
        return torch.cat(parts), torch.cat(vectors)

    def l2_penalty(self, batch: SparseBatch, reg_linear: float, reg_factors: float) -> torch.Tensor:
        """Mean over the rows of reg_linear * sum w_i^2 + reg_factors * sum ||V_i||^2.

        The sums run over each row's active features, weighted by x_i^2 (1 on binary
        rows), as in libFM's per-example SGD regularisation: a feature is shrunk in
        proportion to how often it is seen, and rows the batch never touched are left
        alone (a dense weight decay would, under Adam, pull every rare feature to zero at
        full step size).
        """
        if reg_linear == 0 and reg_factors == 0:
            return self.bias.new_zeros(())
        per_feature = reg_linear * self.linear.square() + reg_factors * self.factors.square().sum(1)
        pattern, pattern_t = batch.rows, batch.rows_t
        if not batch.is_binary:
            pattern, pattern_t = batch.squared, batch.squared_t
        return sparse_product(pattern, pattern_t, per_feature[:, None]).mean()

    def _check_width(self, width: int) -> None:
        if width != self.n_features:
            raise ValueError(
                f"rows have {width} features but the model was built for {self.n_features}"
            )
