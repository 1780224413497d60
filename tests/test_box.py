"""How a step meets the input box: the exact solve of :func:`fmadv.threat.reach_scale`
against bisection, the projection onto the ball and the box against its optimality
conditions, and what each convention gives."""

import pytest
import torch

from fmadv.errors import ConfigError
from fmadv.threat import (
    UNBOUNDED,
    ThreatModel,
    place_step,
    project_l2,
    reach_scale,
    row_norms,
)

NORMS = ("l2", "l1", "linf")


def binary_ish_rows(seed: int, rows: int = 40, n: int = 30) -> torch.Tensor:
    """Rows in [0, 1] with many coordinates on the walls, as binary and image rows have."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(rows, n, generator=generator, dtype=torch.float64)
    return torch.where(x < 0.3, 0.0, torch.where(x > 0.8, 1.0, x))


def room(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return -x, 1 - x


def clipped_norm(scale, direction, low, high, norm):
    return row_norms(torch.clamp(scale[:, None] * direction, min=low, max=high), norm)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("eps", [0.05, 0.7, 3.0, 50.0])
def test_reach_scale_is_the_smallest_scale_of_norm_eps(norm, eps):
    x = binary_ish_rows(0)
    direction = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    direction[:, :4] = 0  # coordinates that do not move
    direction[:3] = 0  # rows that do not move
    low, high = room(x)
    scale = reach_scale(direction, eps, norm, low, high)
    # Bisection on the monotone norm of the clipped step.
    lo, hi = torch.zeros(len(x), dtype=x.dtype), torch.full((len(x),), 1e6, dtype=x.dtype)
    for _ in range(200):
        mid = (lo + hi) / 2
        above = clipped_norm(mid, direction, low, high, norm) >= eps
        hi, lo = torch.where(above, mid, hi), torch.where(above, lo, mid)
    most = clipped_norm(torch.full_like(lo, 1e12), direction, low, high, norm)
    reached = most >= eps
    # Small budgets are in reach of every moving row, the largest of none.
    assert reached[3:].all() if eps == 0.05 else not reached.any() if eps == 50 else True
    torch.testing.assert_close(scale[reached], hi[reached])
    got = clipped_norm(scale, direction, low, high, norm)
    torch.testing.assert_close(got, torch.minimum(most, torch.tensor(eps, dtype=x.dtype)))
    assert torch.equal(scale[:3], torch.zeros(3, dtype=x.dtype))


@pytest.mark.parametrize("norm", NORMS)
def test_unbounded_step_is_the_plain_step(norm):
    x = binary_ish_rows(2)
    direction = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=x.dtype)
    unit = direction / row_norms(direction, norm)[:, None]
    for box in ("project", "clip", "none"):
        torch.testing.assert_close(
            place_step(x, direction, 0.4, norm, UNBOUNDED, box), x + 0.4 * unit
        )


def test_projection_onto_the_ball_and_the_box_is_the_nearest_point():
    x = binary_ish_rows(4)
    generator = torch.Generator().manual_seed(5)
    z = x + 0.6 * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    p = project_l2(x, z, 1.0, (0.0, 1.0))
    assert ((p >= 0) & (p <= 1)).all()
    assert (row_norms(p - x, "l2") <= 1 + 1e-12).all()
    # No feasible point near p is closer to z: small moves, pulled back into the set.
    low, high = room(x)
    for _ in range(300):
        q = p - x + 1e-3 * torch.randn(x.shape, generator=generator, dtype=x.dtype)
        q = torch.clamp(q, min=low, max=high)
        q = q * (1.0 / row_norms(q, "l2")).clamp(max=1)[:, None]
        assert (row_norms(x + q - z, "l2") >= row_norms(p - z, "l2") - 1e-12).all()
    # Inside the ball already: the projection is the box clip.
    near = x + 0.01 * (z - x)
    torch.testing.assert_close(project_l2(x, near, 1.0, (0.0, 1.0)), near.clamp(0, 1))


def test_projected_l2_step_is_the_steepest_ascent_over_the_ball_and_the_box():
    # The linear gain <g, d> over the ball and the box is largest at the projected step.
    x = binary_ish_rows(6)
    generator = torch.Generator().manual_seed(7)
    g = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    best = place_step(x, g, 1.2, "l2", (0.0, 1.0), "project") - x
    clipped = place_step(x, g, 1.2, "l2", (0.0, 1.0), "clip") - x
    assert ((best * g).sum(1) >= (clipped * g).sum(1) - 1e-12).all()
    low, high = room(x)
    for _ in range(300):
        d = best + 1e-2 * torch.randn(x.shape, generator=generator, dtype=x.dtype)
        d = torch.clamp(d, min=low, max=high)
        d = d * (1.2 / row_norms(d, "l2")).clamp(max=1)[:, None]
        assert ((d * g).sum(1) <= (best * g).sum(1) + 1e-12).all()


def test_unknown_box_convention_is_refused():
    with pytest.raises(ConfigError, match="box convention"):
        ThreatModel("l2", 1.0, box="wrap")
