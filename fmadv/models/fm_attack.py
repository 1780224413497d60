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
with the norm over the supported coordinates before clipping, or, for the step projected
into the box, over those that can move: on binary rows that step meets no wall while
eps <= 1), over all or only the active features, and the L2 step on the active
embeddings (APR), which costs O(m k) per row and goes through autograd on the gathered
embeddings. Any other threat model has no closed form here and the attack core runs it
on dense rows.

On a ranking batch (:class:`~fmadv.sparse.PairBatch`) the attacker is the user: one
step of the user's features serves all of the user's rows. The tiles then run over the
user's columns only, one row per user, with the direction [c, a] = [sum_r slope_r,
sum_r slope_r s_r] of the user's summed loss in place of [rho, rho * s]; the item
sides stay clean and the scores follow from the two sides' sums.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from fmadv.losses import LossFn, loss_direction
from fmadv.sparse import PairBatch, SparseBatch
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
    # The L2 step's norm over the coordinates that can move (a zero with a positive
    # lean, a one with a negative one): the step projected into the box, which never
    # meets a wall for eps <= 1. Otherwise over all of them, before the box clips.
    movable: bool = False

    def rise_norm2(self, lean: torch.Tensor) -> torch.Tensor:
        """Each zero's share of ||g||^2, per row of a tile."""
        return (lean.relu() if self.movable else lean).square().sum(1)

    def fall_norm2(self, lean: torch.Tensor) -> torch.Tensor:
        """Each one's share of ||g||^2."""
        return (lean.clamp(max=0) if self.movable else lean).square()

    def rise_(self, lean: torch.Tensor) -> torch.Tensor:
        """Unscaled rise of zeros, in place: 1[lean > 0] (sign) or relu(lean) (L2)."""
        return lean.gt_(0) if self.sign else lean.relu_()

    def fall(self, lean: torch.Tensor, inv_norm: torch.Tensor) -> torch.Tensor:
        """Signed move e of a one (<= 0): -1[lean < 0] or min(lean, 0) / ||g||."""
        if self.sign:
            return -(lean < 0).to(lean.dtype)
        return torch.clamp(lean, max=0) * inv_norm


PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16}


def _tiles(m: int, batch_rows: int):
    """Slices of positions 0..m-1, each small enough for one (batch x tile) block."""
    width = max(1, TILE_ELEMENTS // max(batch_rows, 1))
    for start in range(0, m, width):
        yield slice(start, min(start + width, m))


def _tile_columns(positions: slice, columns: torch.Tensor | None):
    """The features of a tile: a slice of all of them, or of the movable ``columns``."""
    return positions if columns is None else columns[positions]


def _tile_leans(factors, linear, direction, lean_dtype=None, columns=None):
    """Yield (positions, features, lean) per tile: lean = c w_J + a V_J^T for the rows'
    directions [c, a], over every feature or only the movable ``columns``.

    For one row moving on its own, [c, a] = [rho, rho * s] and the lean is rho * g_j
    (without the x_j ||V_j||^2 of the ones, which are corrected apart). The step function
    then overwrites the lean in place. With ``lean_dtype`` (bfloat16) the product runs in
    that type and only decides the mask; everything accumulated from it stays in the
    parameters' type.
    """
    left = direction if lean_dtype is None else direction.to(lean_dtype)
    m = factors.shape[0] if columns is None else len(columns)
    for positions in _tiles(m, direction.shape[0]):
        cols = _tile_columns(positions, columns)
        right = torch.cat([linear[cols, None], factors[cols]], 1).to(left.dtype)
        yield positions, cols, (left @ right.T).to(factors.dtype)


class _AttackedSums(torch.autograd.Function):
    """[x_adv V, <w, x_adv>, (x_adv^2)(V^2)] per row, x_adv = x + eps e the step's point.

    The step of row t follows its direction [c_t, a_t]: the gradient of the attacked
    loss with respect to coordinate j is c_t (w_j - x_j ||V_j||^2) + <V_j, a_t>. Only the
    ``columns`` move (all features when None); every entry of the rows lies in them.
    """

    @staticmethod
    def forward(ctx, linear, factors, batch: SparseBatch, direction, eps, step, columns):
        V, w = factors, linear
        k = V.shape[1]
        n_rows = batch.n_rows
        q = V.square().sum(1)
        c, a = direction[:, 0], direction[:, 1:]
        cols, row = batch.columns, batch.row_of_entry
        # The lean of each one: its true gradient, times the row's side.
        lean_active = c[row] * (w[cols] - q[cols]) + (V[cols] * a[row]).sum(1)

        # Rows with no direction (a hinge that is not active) do not move.
        moving = torch.nonzero(direction.ne(0).any(1)).squeeze(1)
        # The tiles treat the ones as zeros; what they assumed for each one is read back
        # from the tile itself, so the correction below undoes exactly what was counted,
        # whatever the float order or type of the tile's product.
        lean_as_zero = torch.zeros_like(lean_active)
        local_row = torch.full((n_rows,), -1, dtype=torch.long, device=w.device)
        local_row[moving] = torch.arange(len(moving), device=w.device)
        position = cols if columns is None else torch.searchsorted(columns, cols)
        by_position = torch.argsort(position, stable=True)
        sorted_positions = position[by_position]
        moving_direction = direction[moving]
        # first = A @ [V, w, q] for the sign step; the L2 step keeps A^2 @ q apart.
        first = w.new_zeros(len(moving), k + 2)
        norm2 = w.new_zeros(n_rows)
        m = V.shape[0] if columns is None else len(columns)
        cache = step.sign and len(moving) * m <= CACHE_ELEMENTS
        rises = [] if cache else None
        if step.all_features and len(moving):
            norm2_moving = w.new_zeros(len(moving))
            for positions, cols_j, lean in _tile_leans(
                V, w, moving_direction, step.lean_dtype, columns
            ):
                bounds = torch.tensor([positions.start, positions.stop], device=w.device)
                low, high = torch.searchsorted(sorted_positions, bounds).tolist()
                entries = by_position[low:high]
                entries = entries[local_row[row[entries]] >= 0]
                lean_as_zero[entries] = lean[
                    local_row[row[entries]], position[entries] - positions.start
                ]
                table = torch.cat([V[cols_j], w[cols_j, None], q[cols_j, None]], 1)
                if not step.sign:
                    norm2_moving += step.rise_norm2(lean)
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
            ones = step.fall_norm2(lean_active)
            norm2.index_add_(0, row, ones - step.rise_norm2(lean_as_zero[:, None]))
            scale1 = norm2.clamp_min(torch.finfo(w.dtype).tiny).rsqrt()
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

        dense_first = w.new_zeros(n_rows, k + 2)
        dense_first[moving] = first
        sparse_first = c1_rows @ torch.cat([V, w[:, None]], 1)
        s_adv = sparse_first[:, :k] + eps * scale1[:, None] * dense_first[:, :k]
        lin_adv = sparse_first[:, k] + eps * scale1 * dense_first[:, k]
        sq_adv = (c2_rows @ q[:, None])[:, 0] + eps**2 * scale2 * dense_first[:, k + 1]

        ctx.eps, ctx.step, ctx.rises, ctx.columns = eps, step, rises, columns
        ctx.c1_rows_t, ctx.c2_rows_t = c1_rows_t, c2_rows_t
        ctx.save_for_backward(factors, linear, moving_direction, moving, scale1, scale2)
        return torch.cat([s_adv, lin_adv[:, None], sq_adv[:, None]], 1)

    @staticmethod
    def backward(ctx, grad_sums):
        V, w, moving_direction, moving, scale1, scale2 = ctx.saved_tensors
        eps, step, columns = ctx.eps, ctx.step, ctx.columns
        k = V.shape[1]
        # d sums / d V_j = x_adv_j (first order) and 2 x_adv_j^2 V_j (the squared norms);
        # d sums / d w_j = x_adv_j.
        upstream = grad_sums[:, : k + 1]
        twice_sq = 2 * grad_sums[:, k + 1]
        sparse = ctx.c1_rows_t @ upstream
        sparse_sq = (ctx.c2_rows_t @ twice_sq[:, None])[:, 0]
        grad_V = sparse[:, :k] + sparse_sq[:, None] * V
        grad_w = sparse[:, k].clone()
        if step.all_features and len(moving):
            # Tile rows carry the same scales as in forward: [first order | second order].
            tile_up = torch.cat(
                [
                    upstream[moving] * (eps * scale1[moving])[:, None],
                    (twice_sq * eps**2 * scale2)[moving, None],
                ],
                1,
            )
            m = V.shape[0] if columns is None else len(columns)
            if ctx.rises is not None:
                tiles = zip(_tiles(m, len(moving)), ctx.rises, strict=True)
                tiles = (
                    (_tile_columns(positions, columns), rise.to(V.dtype))
                    for positions, rise in tiles
                )
            else:
                # Rows with zero upstream gradient add nothing: recompute only the others.
                needed = torch.nonzero(grad_sums[moving].ne(0).any(1)).squeeze(1)
                if len(needed) < len(moving):
                    moving_direction, tile_up = moving_direction[needed], tile_up[needed]
                leans = _tile_leans(V, w, moving_direction, columns=columns)
                tiles = ((cols_j, step.rise_(lean)) for _, cols_j, lean in leans)
            for cols_j, rise in tiles:
                if step.sign:
                    back = rise.T @ tile_up
                else:
                    back = torch.cat(
                        [rise.T @ tile_up[:, : k + 1], rise.square_().T @ tile_up[:, k + 1 :]], 1
                    )
                grad_V[cols_j] += back[:, :k] + back[:, k + 1, None] * V[cols_j]
                grad_w[cols_j] += back[:, k]
        return grad_w, grad_V, None, None, None, None, None


def _attacked_sums(model, batch: SparseBatch, direction, ball: ThreatModel, lean_dtype, columns):
    step = _Step(ball.norm == "linf", ball.support == "all", lean_dtype, ball.box == "project")
    return _AttackedSums.apply(
        model.linear, model.factors, batch, direction, float(ball.eps), step, columns
    )


def exact_scores(
    model: FactorizationMachine,
    batch: SparseBatch | PairBatch,
    slope: torch.Tensor,
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
        The FM and its rows: a :class:`SparseBatch` (each row moves on its own) or a
        :class:`PairBatch` (each user's features move once for all of its rows).
    slope
        d loss / d y_hat per row. A row moving on its own needs only its sign (the side
        its score is pushed to; 0: the row does not move); a user's shared step follows
        the slope-weighted sum of its rows' gradients.
    ball
        An L-inf or L2 ball over the binary inputs (all or active features), clipped to
        the box or projected into it (L2: for eps <= 1), or an L2 ball over the active
        embeddings (APR, per row).
    lean_dtype
        ``torch.bfloat16`` runs the tiles' mask product in bf16 (tensor cores on a GPU):
        a few coordinates near the sign boundary may then move the other way, and the
        score returned is the exact score of that slightly different box perturbation.
    """
    slope = slope.to(model.factors.dtype)
    if ball.space == "embeddings":
        if ball.norm != "l2":
            return None
        rows = batch.to_rows() if isinstance(batch, PairBatch) else batch
        return _apr_scores(model, rows, torch.sign(slope), float(ball.eps))
    if ball.norm not in ("linf", "l2") or not batch.is_binary or ball.box == "none":
        return None
    if ball.norm == "l2" and ball.box == "project" and ball.eps > 1:
        return None  # the projected step meets the walls: no closed form here
    if isinstance(batch, PairBatch):
        return _shared_user_scores(model, batch, slope, ball, lean_dtype)
    rho = torch.sign(slope)
    with torch.no_grad():
        s = batch.rows @ model.factors
    direction = torch.cat([rho[:, None], rho[:, None] * s], 1)
    sums = _attacked_sums(model, batch, direction, ball, lean_dtype, None)
    return model.scores_from_sums(sums)


def _shared_user_scores(model, batch: PairBatch, slope, ball, lean_dtype) -> torch.Tensor:
    """Scores after one step of each user's features, shared by all of the user's rows.

    The step follows the gradient of the user's summed loss with respect to its
    features: sum_r slope_r (w_j - x_j ||V_j||^2 + <V_j, s_r>), s_r = x_u V + x_i V, that is
    the direction [c, a] with c = sum_r slope_r and a = sum_r slope_r s_r. Under a
    pairwise loss c = 0 and the step is the exact worst case of the linear score gap.
    """
    table = model.side_table()
    item_sums = model.side_sums(batch.items, table)
    with torch.no_grad():
        user_s = (batch.users.rows @ model.factors).to(slope.dtype)
        row_s = user_s[batch.user_of_row] + item_sums[:, : model.n_factors][batch.item_of_row]
        c = slope.new_zeros(batch.n_users).index_add_(0, batch.user_of_row, slope)
        a = torch.zeros_like(user_s).index_add_(0, batch.user_of_row, slope[:, None] * row_s)
        direction = torch.cat([c[:, None], a], 1)
    columns = batch.user_columns if ball.support == "all" else None
    user_sums = _attacked_sums(model, batch.users, direction, ball, lean_dtype, columns)
    return model.pair_scores(user_sums, item_sums, batch)


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
    direction = torch.cat([rho[moving, None], rho[moving, None] * s], 1)
    differ = 0
    exact = _tile_leans(V, w, direction)
    rounded = _tile_leans(V, w, direction, lean_dtype)
    for (_, _, a), (_, _, b) in zip(exact, rounded, strict=True):
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
