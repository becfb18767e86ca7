"""Learned fusion in PyTorch: the Fusion Network (paper 000) and the self-supervised autoencoder (paper 003).

Needs the optional ``train`` extra (torch). The service never imports this package: it runs the
exported ONNX graphs through ``surgifuse.engines.fusion_net`` and ``surgifuse.engines.autoencoder``.
"""

from .config import AutoencoderConfig, DataConfig, FusionNetConfig, TrainConfig

__all__ = ["AutoencoderConfig", "DataConfig", "FusionNetConfig", "TrainConfig"]
