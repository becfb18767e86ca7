"""Paper 002's depth losses and the monocular depth network (surgifuse/learning/depth_losses.py,
surgifuse/learning/models/depth_net.py)."""

from __future__ import annotations

import math

import pytest
from optional import optional_import

torch = optional_import("torch")

from surgifuse.errors import InputError  # noqa: E402
from surgifuse.learning.depth_losses import DepthLosses  # noqa: E402
from surgifuse.learning.models.depth_net import DepthNet  # noqa: E402


def _ramp(n=16, slope=0.02, offset=0.1):
    x = torch.arange(n, dtype=torch.float32)
    return (offset + slope * x)[None, None, None, :].repeat(1, 1, n, 1)


def test_identical_depth_costs_nothing_and_a_scaled_depth_costs_its_log_ratio():
    losses = DepthLosses(alpha=0.5)
    d = _ramp()
    zero = losses(d, d)
    assert all(float(v) == pytest.approx(0.0, abs=1e-7) for v in zero.values())
    # d' = 2 (d + a) - a: ln(d' + a) - ln(d + a) = ln 2 everywhere, and the same log-gradients
    doubled = 2 * (d + 0.5) - 0.5
    out = losses(doubled, d)
    assert float(out["depth"]) == pytest.approx(math.log(2.0), rel=1e-5)
    assert float(out["grad"]) == pytest.approx(0.0, abs=1e-6) and float(out["normal"]) == pytest.approx(0.0, abs=1e-6)


def test_a_tilted_surface_against_a_flat_one_costs_gradient_and_normal():
    losses = DepthLosses()
    flat = torch.full((1, 1, 16, 16), 0.3)
    out = losses(_ramp(offset=0.3), flat)
    assert float(out["grad"]) > 0 and 0 < float(out["normal"]) < 1
    assert float(out["total"]) == pytest.approx(float(out["depth"] + out["grad"] + out["normal"]))


def test_bad_shapes_and_alpha_are_named():
    with pytest.raises(InputError, match="same shape"):
        DepthLosses()(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 4))
    with pytest.raises(InputError, match=r"\(N, 1, H, W\)"):
        DepthLosses()(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))
    with pytest.raises(InputError, match="alpha"):
        DepthLosses(alpha=0.0)


def test_the_network_predicts_depth_at_every_scale_and_learns_a_constant():
    torch.manual_seed(0)
    net = DepthNet()
    image = torch.rand(2, 3, 32, 48)
    outputs = net(image)
    assert [tuple(o.shape) for o in outputs] == [(2, 1, 32, 48), (2, 1, 16, 24), (2, 1, 8, 12), (2, 1, 4, 6),
                                                 (2, 1, 2, 3)]
    assert all(float(o.detach().min()) >= 0 and float(o.detach().max()) <= 1 for o in outputs)
    # a few steps towards a constant depth bring the full-size output there
    target = torch.full((2, 1, 32, 48), 0.8)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(30):
        loss = DepthLosses()(net(image)[0], target)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        assert abs(float(net(image)[0].mean()) - 0.8) < 0.1
    with pytest.raises(InputError, match="multiples of 16"):
        net(torch.rand(1, 3, 30, 48))
