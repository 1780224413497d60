"""The factorization machine's exact fast path for box-clipped gradient attacks.

For a binary row x the gradient of y_hat with respect to every input j is

    g_j = w_j + <V_j, s> - x_j ||V_j||^2,    s = x V,

and an attack step moves coordinate j by eps * e_j, clipped to [0, 1]: a zero may only
rise, a one may only fall. The perturbed score y_hat(x + eps e) needs e V, <w, e> and
sum_j e_j^2 ||V_j||^2, never a dense (batch x n) x_adv. They are computed tile by tile
over the features: G = S V_J^T + w_J, a step function of rho * G (rho the sign of the
loss's slope in y_hat), then A @ [V_J, w_J, q_J]. Tiles treat every coordinate as a zero;
the few active coordinates (the ones) are corrected afterwards with sparse products. The
backward pass recomputes A per tile, as memory-efficient attention does, so memory stays
O(batch * k + n * k + batch * tile).

The path serves a threat model, not an attack class: one steepest-ascent step to the
edge of an L-inf ball (the sign step, e_j in {-1, 0, 1}) or of an L2 ball (e = g / ||g||_2,
with the norm over the supported coordinates before clipping), over all or only the
active features, and the L2 step on the active embeddings (APR), which costs O(m k) per
row and goes through autograd on the gathered embeddings. Any other threat model has no
closed form here and the attack core runs it on dense rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from fmadv.losses import LossFn, loss_direction
from fmadv.sparse import SparseBatch
from fmadv.threat import ThreatModel

if TYPE_CHECKING:
    from fmadv.models.fm import FactorizationMachine

# Elements of one (batch x tile) block: 2^22 floats = 16 MiB in float32.
TILE_ELEMENTS = 1 << 22
# The forward pass keeps the tiles' step values for the backward pass (1 byte each for
# the sign step) when all of them fit in this many elements; otherwise the backward pass
# recomputes them, one product per tile, and memory stays O(batch * tile).
CACHE_ELEMENTS = 1 << 26


@dataclass
class _Step:
    """What the attack does to one coordinate, given its lean rho * g_j and the row norm."""

    sign: bool  # True: FGSM's sign step; False: the L2 step g / ||g||
    all_features: bool
    lean_dtype: torch.dtype | None = None  # the tiles' product in this type (bf16), or not

    def rise_(self, lean: torch.Tensor) -> torch.Tensor:
        """Unscaled rise of zeros, in place: 1[lean > 0] (sign) or relu(lean) (L2)."""
        return lean.gt_(0) if self.sign else lean.relu_()

    def fall(self, lean: torch.Tensor, inv_norm: torch.Tensor) -> torch.Tensor:
        """Signed move e of a one (<= 0): -1[lean < 0] or min(lean, 0) / ||g||."""
        if self.sign:
            return -(lean < 0).to(lean.dtype)
        return torch.clamp(lean, max=0) * inv_norm


PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16}


def _tiles(n: int, batch_rows: int):
    width = max(1, TILE_ELEMENTS // max(batch_rows, 1))
    for start in range(0, n, width):
        yield slice(start, min(start + width, n))


def _tile_leans(factors, linear, signed_s, lean_dtype: torch.dtype | None = None):
    """Yield (features, lean) per tile, lean = rho * (w_J + V_J s) for the moving rows.

    ``signed_s`` = [rho, rho * s] so that one product gives rho * g without a pass to
    multiply by rho; the step function then overwrites the lean in place. With
    ``lean_dtype`` (bfloat16) the product runs in that type and only decides the mask;
    everything accumulated from it stays in the parameters' type.
    """
    left = signed_s if lean_dtype is None else signed_s.to(lean_dtype)
    for cols in _tiles(factors.shape[0], signed_s.shape[0]):
        right = torch.cat([linear[cols, None], factors[cols]], 1).to(left.dtype)
        yield cols, (left @ right.T).to(factors.dtype)


class _AdversarialScores(torch.autograd.Function):
    @staticmethod
    def forward(ctx, bias, linear, factors, batch: SparseBatch, rho, eps: float, step: _Step):
        V, w = factors, linear
        k = V.shape[1]
        n_rows = batch.n_rows
        q = V.square().sum(1)
        s = batch.rows @ V  # clean s = x V; the step function makes it a constant here
        cols, row = batch.columns, batch.row_of_entry
        g_active = w[cols] + (V[cols] * s[row]).sum(1)  # g_j of a one, as if it were 0
        lean_active = rho[row] * (g_active - q[cols])  # the true g_j of the ones

        # Rows whose loss has zero slope (a hinge that is not active) do not move.
        moving = torch.nonzero(rho).squeeze(1)
        # The tiles treat the ones as zeros; what they assumed for each one is read back
        # from the tile itself, so the correction below undoes exactly what was counted,
        # whatever the float order or type of the tile's product.
        lean_as_zero = torch.zeros_like(lean_active)
        local_row = torch.full((n_rows,), -1, dtype=torch.long, device=s.device)
        local_row[moving] = torch.arange(len(moving), device=s.device)
        by_column = torch.argsort(cols, stable=True)
        sorted_columns = cols[by_column]
        signed_s = torch.cat([rho[moving, None], rho[moving, None] * s[moving]], 1)
        # first = A @ [V, w, q] for the sign step; the L2 step keeps A^2 @ q apart.
        first = s.new_zeros(len(moving), k + 2)
        norm2 = s.new_zeros(n_rows)
        cache = step.sign and len(moving) * V.shape[0] <= CACHE_ELEMENTS
        rises = [] if cache else None
        if step.all_features and len(moving):
            norm2_moving = s.new_zeros(len(moving))
            for cols_j, lean in _tile_leans(V, w, signed_s, step.lean_dtype):
                bounds = torch.tensor([cols_j.start, cols_j.stop], device=s.device)
                low, high = torch.searchsorted(sorted_columns, bounds).tolist()
                entries = by_column[low:high]
                entries = entries[local_row[row[entries]] >= 0]
                lean_as_zero[entries] = lean[local_row[row[entries]], cols[entries] - cols_j.start]
                table = torch.cat([V[cols_j], w[cols_j, None], q[cols_j, None]], 1)
                if not step.sign:
                    norm2_moving += torch.linalg.vecdot(lean, lean)
                rise = step.rise_(lean)
                if step.sign:
                    first += rise @ table
                    if rises is not None:
                        rises.append(rise.to(torch.bool))
                else:
                    first[:, : k + 1] += rise @ table[:, : k + 1]
                    first[:, k + 1] += rise.square_() @ table[:, k + 1]
            norm2[moving] = norm2_moving
        if not step.sign:
            # Swap the tiles' "as if zero" gradients of the ones for their true gradients.
            if not step.all_features:
                norm2.zero_()
                lean_as_zero = torch.zeros_like(lean_as_zero)
            norm2.index_add_(0, row, lean_active.square() - lean_as_zero.square())
            scale1 = norm2.clamp_min(torch.finfo(s.dtype).tiny).rsqrt()
        else:
            scale1 = torch.ones_like(norm2)
        scale2 = scale1.square()

        # Active entries: x_adv = 1 + eps * e; the tiles counted eps * e0 there instead.
        e = step.fall(lean_active, scale1[row])
        if step.all_features:
            e0 = step.rise_(lean_as_zero.clone())
            e0_first, e0_second = e0 * scale1[row], e0.square() * scale2[row]
        else:
            e0_first = e0_second = torch.zeros_like(e)
        c1 = 1 + eps * (e - e0_first)
        c2 = (1 + eps * e).square() - eps**2 * e0_second
        c1_rows, c1_rows_t = batch.with_values(c1)
        c2_rows, c2_rows_t = batch.with_values(c2)

        dense_first = s.new_zeros(n_rows, k + 2)
        dense_first[moving] = first
        sparse_first = c1_rows @ torch.cat([V, w[:, None]], 1)
        s_adv = sparse_first[:, :k] + eps * scale1[:, None] * dense_first[:, :k]
        lin_adv = sparse_first[:, k] + eps * scale1 * dense_first[:, k]
        sq_adv = (c2_rows @ q[:, None])[:, 0] + eps**2 * scale2 * dense_first[:, k + 1]
        scores = bias + lin_adv + 0.5 * (s_adv.square().sum(1) - sq_adv)

        ctx.eps, ctx.step, ctx.rises = eps, step, rises
        ctx.c1_rows_t, ctx.c2_rows_t = c1_rows_t, c2_rows_t
        ctx.save_for_backward(factors, linear, signed_s, moving, s_adv, scale1, scale2)
        return scores

    @staticmethod
    def backward(ctx, grad_scores):
        V, w, signed_s, moving, s_adv, scale1, scale2 = ctx.saved_tensors
        eps, step = ctx.eps, ctx.step
        k = V.shape[1]
        # d y_adv / d V_j = x_adv_j * s_adv - x_adv_j^2 * V_j;  d y_adv / d w_j = x_adv_j.
        upstream = torch.cat([grad_scores[:, None] * s_adv, grad_scores[:, None]], 1)
        sparse = ctx.c1_rows_t @ upstream
        sparse_sq = (ctx.c2_rows_t @ grad_scores[:, None])[:, 0]
        grad_V = sparse[:, :k] - sparse_sq[:, None] * V
        grad_w = sparse[:, k].clone()
        if step.all_features and len(moving):
            # Tile rows carry the same scales as in forward: [first order | second order].
            tile_up = torch.cat(
                [
                    upstream[moving] * (eps * scale1[moving])[:, None],
                    (grad_scores * eps**2 * scale2)[moving, None],
                ],
                1,
            )
            if ctx.rises is not None:
                tiles = zip(_tiles(V.shape[0], len(moving)), ctx.rises, strict=True)
                tiles = ((cols_j, rise.to(V.dtype)) for cols_j, rise in tiles)
            else:
                # Rows with zero upstream gradient add nothing: recompute only the others.
                needed = torch.nonzero(grad_scores[moving]).squeeze(1)
                if len(needed) < len(moving):
                    signed_s, tile_up = signed_s[needed], tile_up[needed]
                tiles = ((cols_j, step.rise_(lean)) for cols_j, lean in _tile_leans(V, w, signed_s))
            for cols_j, rise in tiles:
                if step.sign:
                    back = rise.T @ tile_up
                else:
                    back = torch.cat(
                        [rise.T @ tile_up[:, : k + 1], rise.square_().T @ tile_up[:, k + 1 :]], 1
                    )
                grad_V[cols_j] += back[:, :k] - back[:, k + 1, None] * V[cols_j]
                grad_w[cols_j] += back[:, k]
        return grad_scores.sum(), grad_w, grad_V, None, None, None, None


def exact_scores(
    model: FactorizationMachine,
    batch: SparseBatch,
    rho: torch.Tensor,
    ball: ThreatModel,
    lean_dtype: torch.dtype | None = None,
) -> torch.Tensor | None:
    """Scores y_hat(x_adv) after one steepest-ascent step to the edge of ``ball``, exact,
    without a dense x_adv; None when the FM has no closed form for that step.

    Differentiable in the model's parameters with x_adv held fixed (the step function
    of the attack has zero derivative), as autograd on the dense rows gives.

    Parameters
    ----------
    model, batch
        The FM and its rows.
    rho
        sign(d loss / d y_hat) per row: the side each score is pushed to (0: the row
        does not move).
    ball
        An L-inf or L2 ball over the binary inputs (all or active features), or an L2
        ball over the active embeddings (APR).
    lean_dtype
        ``torch.bfloat16`` runs the tiles' mask product in bf16 (tensor cores on a GPU):
        a few coordinates near the sign boundary may then move the other way, and the
        score returned is the exact score of that slightly different box perturbation.
    """
    rho = rho.to(model.factors.dtype)
    if ball.space == "embeddings":
        return _apr_scores(model, batch, rho, float(ball.eps)) if ball.norm == "l2" else None
    if ball.norm not in ("linf", "l2") or not batch.is_binary:
        return None
    step = _Step(ball.norm == "linf", ball.support == "all", lean_dtype)
    return _AdversarialScores.apply(
        model.bias, model.linear, model.factors, batch, rho, float(ball.eps), step
    )


@torch.no_grad()
def mask_disagreement(
    model: FactorizationMachine,
    batch: SparseBatch,
    labels: torch.Tensor,
    loss_fn: LossFn,
    lean_dtype: torch.dtype = torch.bfloat16,
) -> tuple[int, int]:
    """(coordinates whose sign-step mask differs from the float32 mask, coordinates
    compared) over every (moving row, feature) pair of a batch."""
    V, w = model.factors, model.linear
    rho = loss_direction(model(batch), labels, loss_fn).to(V.dtype)
    moving = torch.nonzero(rho).squeeze(1)
    s = (batch.rows @ V)[moving]
    signed_s = torch.cat([rho[moving, None], rho[moving, None] * s], 1)
    differ = 0
    exact = _tile_leans(V, w, signed_s)
    rounded = _tile_leans(V, w, signed_s, lean_dtype)
    for (_, a), (_, b) in zip(exact, rounded, strict=True):
        differ += int(((a > 0) != (b > 0)).sum())
    return differ, len(moving) * V.shape[0]


def _apr_scores(
    model: FactorizationMachine, batch: SparseBatch, rho: torch.Tensor, eps: float
) -> torch.Tensor:
    """Scores with each row's active embeddings moved by eps * g / ||g|| (APR).

    On a binary row, d y_hat / d V_j = s - V_j for an active j, so the loss gradient with
    respect to the row's embeddings is rho * |slope| * (s - V_j); the norm over the row
    cancels |slope|. The perturbation is a constant for the parameter gradients.
    """
    cols, row = batch.columns, batch.row_of_entry
    embedded = model.factors[cols]  # (nnz, k), differentiable
    with torch.no_grad():
        s = torch.zeros(batch.n_rows, model.n_factors, dtype=embedded.dtype, device=embedded.device)
        s.index_add_(0, row, embedded)
        direction = rho[row, None] * (s[row] - embedded)
        norms = torch.zeros_like(rho).index_add_(0, row, direction.square().sum(1))
        delta = eps * direction * norms.clamp_min(torch.finfo(s.dtype).tiny).rsqrt()[row, None]
    moved = embedded + delta
    s_adv = torch.zeros_like(s).index_add(0, row, moved)
    sq_adv = torch.zeros_like(rho).index_add(0, row, moved.square().sum(1))
    linear = torch.zeros_like(rho).index_add(0, row, model.linear[cols])
    return model.bias + linear + 0.5 * (s_adv.square().sum(1) - sq_adv)
