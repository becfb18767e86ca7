"""The learned models: the Fusion Network (paper 000) and the self-supervised autoencoder (paper 003)."""

from .autoencoder import Autoencoder, DenseEncoder, FeatureActivity
from .fusion_net import FrameEncoder, FuseRefine, FusionNet

__all__ = ["Autoencoder", "DenseEncoder", "FeatureActivity", "FrameEncoder", "FusionNet", "FuseRefine"]
