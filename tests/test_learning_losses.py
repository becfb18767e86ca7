"""Each Fusion Network loss is zero on identical inputs and passes gradients to the network."""

import numpy as np
import pytest
from optional import optional_import

torch = optional_import("torch")

from surgifuse.learning.config import AutoencoderConfig, FusionNetConfig  # noqa: E402
from surgifuse.learning.losses import (  # noqa: E402
    AllInFocusLoss,
    EdgeLoss,
    FusionLoss,
    IdentityLoss,
    PerceptualLoss,
    ReconstructionLoss,
    canny_edges,
    gaussian_ssim,
)
from surgifuse.learning.models import Autoencoder, FusionNet  # noqa: E402


@pytest.fixture
def net():
    torch.manual_seed(0)
    n = FusionNet(FusionNetConfig(encoder_width=8, refine_width=8, res_blocks=1))
    torch.nn.init.normal_(n.fuse.to_rgb.weight, std=0.05)
    return n


@pytest.fixture
def images():
    torch.manual_seed(1)
    gt = torch.rand(2, 3, 24, 24)
    frames = torch.rand(2, 3, 3, 24, 24)
    canny = torch.from_numpy(np.stack([canny_edges((g.permute(1, 2, 0).numpy() * 255).astype(np.uint8)) for g in gt]))[:, None]
    return frames, gt, canny


def _assert_grad_reaches(net):
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)


def _extractor():
    return Autoencoder(AutoencoderConfig(stem_width=8, growth=4)).encoder


@pytest.mark.parametrize("make", [AllInFocusLoss, lambda: PerceptualLoss(_extractor())])
def test_pair_losses_zero_on_identical_and_grad(make, net, images):
    loss = make()
    frames, gt, _ = images
    assert float(loss(gt, gt.clone())) == 0.0
    value = loss(net(frames), gt)
    assert float(value.detach()) > 0
    value.backward()
    _assert_grad_reaches(net)


def test_edge_loss_zero_on_identical_and_grad(net, images):
    frames, gt, canny = images
    assert float(canny.sum()) > 0
    loss = EdgeLoss()
    assert float(loss(gt, gt.clone(), canny)) == 0.0
    value = loss(net(frames), gt, canny)
    assert float(value.detach()) > 0
    value.backward()
    _assert_grad_reaches(net)


def test_edge_loss_penalises_blur(images):
    _, gt, canny = images
    blurred = torch.nn.functional.avg_pool2d(gt, 3, 1, 1, count_include_pad=False)
    assert float(EdgeLoss()(blurred, gt, canny)) > 0.01


def test_identity_loss_zero_for_identity_network_and_grad(net, images):
    _, gt, _ = images
    fresh = FusionNet(FusionNetConfig(encoder_width=8, refine_width=8, res_blocks=1))  # residual starts at zero
    assert float(IdentityLoss()(fresh, gt).detach()) < 1e-6
    value = IdentityLoss()(net, gt)
    assert float(value.detach()) > 0
    value.backward()
    _assert_grad_reaches(net)


def test_perceptual_extractor_is_frozen(net, images):
    frames, gt, _ = images
    loss = PerceptualLoss(_extractor())
    loss.train()
    assert not loss.features.training
    loss(net(frames), gt).backward()
    assert all(p.grad is None for p in loss.features.parameters())


def test_fusion_loss_sums_chosen_terms(net, images):
    frames, gt, canny = images
    total, parts = FusionLoss(("aif", "edge", "identity", "perceptual"), feature_extractor=_extractor())(net, net(frames), gt, canny)
    assert set(parts) == {"aif", "edge", "identity", "perceptual"}
    torch.testing.assert_close(total, sum(parts.values()))
    with pytest.raises(ValueError, match="feature_extractor"):
        FusionLoss(("perceptual",))


def test_reconstruction_loss_and_ssim():
    x = torch.rand(1, 3, 32, 32)
    assert abs(float(gaussian_ssim(x, x)) - 1) < 1e-5
    assert float(ReconstructionLoss()(x, x)) < 1e-5
    assert float(ReconstructionLoss()(x.flip(-1), x)) > 0.1


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="same shape"):
        AllInFocusLoss()(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
    with pytest.raises(ValueError, match="canny"):
        EdgeLoss()(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), torch.rand(1, 8, 8))
    with pytest.raises(ValueError, match="uint8"):
        canny_edges(np.zeros((8, 8, 3), np.float32))
