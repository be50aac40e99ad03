"""DeepConnection: a ResNet trunk, spatial pyramid pooling, a power mean transform, and a
multi-sample dropout head (Bojar & Uhlich, 2021), configurable to reproduce their ablation.

    image (B, 3, H, W)
      -> trunk: torchvision ResNet without avgpool and fc        (B, C, h, w)
      -> pool:  "gap"  global average                            (B, C)
                "spp"  adaptive max pooling at levels 8, 4, 2, 1  (B, C * 85)
      -> transform: "spp-pmt" adds sign(x)·log(1+|x|) and its square,
                    concatenated (the raw x is not kept)          (B, 2 · C * 85)
      -> head: Linear -> ReLU -> BatchNorm1d -> S x [Dropout -> one shared Linear]

For ResNet-34 (C = 512) the head reads 87,040 values, whatever the input size: the pyramid
pools adaptively, so every size works (the reference's padding arithmetic failed at most).
In training the head returns all S dropout samples and the loss is their mean (multi-sample
dropout as published); in evaluation dropout is off and one pass is the answer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from classifier.config import BACKBONES, HEADS, ModelConfig

__all__ = ["BACKBONES", "HEADS", "DeepConnection", "ModelConfig", "load_backbone_weights"]


def _trunk(backbone: str) -> tuple[nn.Module, int]:
    """A torchvision ResNet without its avgpool and fc, and its output channel count."""
    import torchvision

    net = getattr(torchvision.models, backbone)(weights=None)
    channels = net.fc.in_features
    trunk = nn.Sequential(
        net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4
    )
    return trunk, channels


class GlobalAveragePool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))  # (B, C, h, w) -> (B, C)


class SpatialPyramidPool(nn.Module):
    """Max pooling over an n x n grid for each level n, flattened and concatenated."""

    def __init__(self, levels: tuple[int, ...]) -> None:
        super().__init__()
        self.levels = levels
        self.pools = nn.ModuleList(nn.AdaptiveMaxPool2d(n) for n in levels)

    def out_features(self, channels: int) -> int:
        return channels * sum(n * n for n in self.levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, h, w) -> (B, C * sum(n^2))
        return torch.cat([pool(x).flatten(1) for pool in self.pools], dim=1)


class PowerMeanTransform(nn.Module):
    """a = sign(x)·log(1+|x|), b = sign(x)·log(1+|x|)^2, output cat(a, b)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log = torch.log1p(x.abs())
        sign = torch.sign(x)
        return torch.cat([sign * log, sign * log * log], dim=1)  # (B, F) -> (B, 2F)


class MultiSampleDropoutHead(nn.Module):
    def __init__(self, in_features: int, config: ModelConfig) -> None:
        super().__init__()
        self.hidden = nn.Sequential(
            nn.Linear(in_features, config.hidden),
            nn.ReLU(inplace=True),
            nn.BatchNorm1d(config.hidden),
        )
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.hidden, len(config.classes))
        self.samples = config.dropout_samples

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.hidden(x)  # (B, hidden)
        if not self.training:
            return self.classifier(h)  # (B, K): dropout is off, one pass is enough
        # (S, B, K): one set of logits per dropout sample, shared weights
        return torch.stack([self.classifier(self.dropout(h)) for _ in range(self.samples)])


class DeepConnection(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.trunk, channels = _trunk(config.backbone)
        if config.head == "gap":
            self.pool: nn.Module = GlobalAveragePool()
            features = channels
        else:
            spp = SpatialPyramidPool(config.spp_levels)
            self.pool = spp
            features = spp.out_features(channels)
        self.transform: nn.Module = nn.Identity()
        if config.head == "spp-pmt":
            self.transform = PowerMeanTransform()
            features *= 2
        self.head_features = features
        self.head = MultiSampleDropoutHead(features, config)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)  # (B, 3, H, W) -> (B, C, h, w)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        # The pooled features, the power mean transform and the head in fp32, whatever the
        # trunk ran in: log1p of bf16 values is coarse, and the head is cheap.
        with torch.autocast(features.device.type, enabled=False):
            pooled = self.transform(self.pool(features.float()))  # (B, F)
            return self.head(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy, averaged over the dropout samples when there are several."""
        if logits.dim() == 3:  # (S, B, K)
            return torch.stack([F.cross_entropy(s, target) for s in logits]).mean()
        return F.cross_entropy(logits, target)

    def parameter_counts(self) -> dict[str, int]:
        trunk = sum(p.numel() for p in self.trunk.parameters())
        head = sum(p.numel() for p in self.head.parameters())
        return {"trunk": trunk, "head": head, "total": trunk + head}


_TRUNK_PARTS = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


def load_backbone_weights(model: DeepConnection, state: dict[str, torch.Tensor]) -> int:
    """Load a torchvision ResNet state dict (ImageNet, or a local file) into the trunk, or the
    weights of an earlier DeepConnection (its trunk, and its head where the shapes agree);
    return how many tensors were taken. A ResNet's fc layer, trained for ImageNet, is unused."""
    import torchvision

    if any(key.startswith("trunk.") for key in state):
        return _load_deepconnection(model, state)

    net = getattr(torchvision.models, model.config.backbone)(weights=None)
    missing, _unexpected = net.load_state_dict(state, strict=False)
    lacking = [k for k in missing if not k.startswith("fc.")]
    if lacking:
        raise ValueError(
            f"these weights lack {len(lacking)} tensors of a {model.config.backbone} "
            f"(first: {lacking[0]}); are they weights of that architecture?"
        )
    for index, name in enumerate(_TRUNK_PARTS):
        model.trunk.get_submodule(str(index)).load_state_dict(getattr(net, name).state_dict())
    return sum(len(getattr(net, name).state_dict()) for name in _TRUNK_PARTS)


def _load_deepconnection(model: DeepConnection, state: dict[str, torch.Tensor]) -> int:
    own = model.state_dict()
    trunk = {k: v for k, v in state.items() if k.startswith("trunk.")}
    lacking = [k for k in own if k.startswith("trunk.") and k not in trunk]
    wrong = [k for k, v in trunk.items() if k not in own or own[k].shape != v.shape]
    if lacking or wrong:
        raise ValueError(
            f"that model's trunk is not a {model.config.backbone} "
            f"({(lacking or wrong)[0]} does not fit); fine-tune a model of the same backbone"
        )
    head = {
        k: v
        for k, v in state.items()
        if k.startswith("head.") and k in own and own[k].shape == v.shape
    }
    if len(head) != sum(1 for k in own if k.startswith("head.")):
        head = {}  # another head, or left out: a fresh head on the trained trunk
    model.load_state_dict({**own, **trunk, **head})
    return len(trunk) + len(head)
