"""Fusion Network and autoencoder modules: any K, any size, order-free, config checks."""

import pytest
from optional import optional_import

torch = optional_import("torch")

from surgifuse.learning.config import AutoencoderConfig, FusionNetConfig  # noqa: E402
from surgifuse.learning.models import Autoencoder, FeatureActivity, FusionNet  # noqa: E402


def _randomise_output(net):
    torch.manual_seed(3)
    torch.nn.init.normal_(net.fuse.to_rgb.weight, std=0.05)


@pytest.mark.parametrize("output", ["blend", "weights", "rgb"])
@pytest.mark.parametrize("k,h,w", [(1, 16, 16), (3, 23, 37), (6, 33, 18)])
def test_fn_any_stack_size_and_image_size(output, k, h, w):
    net = FusionNet(FusionNetConfig(output=output, encoder_width=8, refine_width=8, res_blocks=2)).eval()
    with torch.no_grad():
        img, weights = net(torch.rand(2, k, 3, h, w), return_weights=True)
    assert img.shape == (2, 3, h, w)
    assert weights.shape == (2, k, h, w)
    torch.testing.assert_close(weights.sum(1), torch.ones(2, h, w))


@pytest.mark.parametrize("fmb,channels", [("fmb3", 6), ("fmb1", 4), ("none", 3)])
def test_fn_input_channels(fmb, channels):
    net = FusionNet(FusionNetConfig(fmb=fmb, encoder_width=8, refine_width=8, res_blocks=1))
    assert net.network_input(torch.rand(2, 3, 12, 12)).shape == (2, channels, 12, 12)
    assert net.encoder.convs[0].in_channels == channels


def test_fn_is_order_free():
    net = FusionNet(FusionNetConfig(encoder_width=8, refine_width=8, res_blocks=2)).eval()
    _randomise_output(net)
    stack = torch.rand(1, 4, 3, 20, 24)
    perm = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        a, wa = net(stack, return_weights=True)
        b, wb = net(stack[:, perm], return_weights=True)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(wa[:, perm], wb, atol=1e-5, rtol=1e-5)


def test_fresh_blend_net_returns_a_single_frame_unchanged():
    # Zero-initialised residual: a one-frame stack comes back as it is (the identity loss starts at 0).
    net = FusionNet(FusionNetConfig(encoder_width=8, refine_width=8, res_blocks=2)).eval()
    x = torch.rand(2, 1, 3, 17, 19)
    with torch.no_grad():
        torch.testing.assert_close(net(x), x[:, 0])


def test_weights_output_is_a_convex_blend_of_the_frames():
    # No residual: every output value lies between the smallest and largest input value at that
    # pixel, whatever the weights (issue 13: the network cannot smooth or invent texture).
    torch.manual_seed(0)
    net = FusionNet(FusionNetConfig(output="weights", encoder_width=8, refine_width=8, res_blocks=2)).eval()
    assert net.fuse.to_rgb is None
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.5)
    stack = torch.rand(2, 4, 3, 21, 26)
    with torch.no_grad():
        out, weights = net(stack, return_weights=True)
    assert torch.all(out >= stack.amin(dim=1) - 1e-6) and torch.all(out <= stack.amax(dim=1) + 1e-6)
    torch.testing.assert_close(out, (weights.unsqueeze(2) * stack).sum(dim=1))


def test_fn_rejects_bad_shape():
    with pytest.raises(ValueError, match="B, K, 3, H, W"):
        FusionNet()(torch.rand(4, 3, 8, 8))


@pytest.mark.parametrize("bad", [dict(fmb="fmb2"), dict(output="x"), dict(refine_downsample=3), dict(encoder_width=0), dict(res_blocks=-1)])
def test_fn_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        FusionNetConfig(**bad)


def test_autoencoder_shapes_and_range():
    cfg = AutoencoderConfig(stem_width=8, growth=4, dense_layers=4)
    ae = Autoencoder(cfg).eval()
    x = torch.rand(2, 3, 21, 30)
    with torch.no_grad():
        y = ae(x)
        f = ae.encoder(x)
        act = FeatureActivity(ae.encoder, window=2)(x)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert f.shape == (2, cfg.feature_channels, 21, 30) == (2, 24, 21, 30)
    assert len(ae.decoder) == 4 and len(ae.encoder.dense) + 1 == 5  # the paper's four / five layers
    assert act.shape == (2, 1, 21, 30) and float(act.min()) >= 0


def test_feature_activity_prefers_sharp_image():
    ae = Autoencoder(AutoencoderConfig(stem_width=8, growth=4)).eval()
    torch.manual_seed(0)
    sharp = torch.rand(1, 3, 32, 32)
    blurred = torch.nn.functional.avg_pool2d(sharp, 5, 1, 2, count_include_pad=False)
    act = FeatureActivity(ae.encoder, window=2)
    with torch.no_grad():
        assert float(act(sharp).mean()) > float(act(blurred).mean())


def test_paper_size_configuration_builds_and_runs():
    # Wider, refinement at full resolution: the configuration for a GPU training run.
    net = FusionNet(FusionNetConfig(encoder_width=64, refine_width=128, refine_downsample=1, output="rgb")).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 2, 3, 12, 10)).shape == (1, 3, 12, 10)
    assert sum(p.numel() for p in net.parameters()) > 2_000_000
