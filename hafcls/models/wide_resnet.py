"""Wide residual networks for 32x32 images (Zagoruyko & Komodakis, BMVC 2016), as timm models.

``WRN-d-k``: a 3x3 stem with 16 channels, then 3 groups of ``n = (d - 4) / 6`` pre-activation
basic blocks (BN-ReLU-conv3x3-BN-ReLU-[dropout]-conv3x3) of widths 16k, 32k, 64k, the second and
third group starting with stride 2; a 1x1 convolution on the shortcut wherever the shape changes;
a final BN-ReLU and global average pooling. Convolutions have no bias.

HAF, HAFrame and Hier-COS train WRN-28-8 from scratch on CIFAR-100 with BatchNorm momentum 0.001
(PyTorch convention: running = 0.999 running + 0.001 batch), which is this module's default.

Importing the module registers ``wide_resnet28_8`` and ``wide_resnet28_10`` with timm, so
``timm.create_model("wide_resnet28_8", num_classes=0)`` gives the backbone (pooled 512-d
features) with timm's usual ``forward_features`` / ``forward_head`` / ``reset_classifier``.
No pretrained weights exist; ``pretrained_cfg`` carries the CIFAR input size and statistics.
"""

from __future__ import annotations

import torch
from timm.layers import SelectAdaptivePool2d
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from hafcls.errors import HafclsError

__all__ = ["WideResNet", "wide_resnet28_8", "wide_resnet28_10"]

BN_MOMENTUM = 0.001
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


class PreActBlock(nn.Module):
    """Pre-activation basic block; the shortcut of a shape-changing block takes the activated
    input through a 1x1 convolution (as in the WRN paper's code)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, drop_rate: float, bn_momentum):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_chs, momentum=bn_momentum)
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs, momentum=bn_momentum)
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_chs != out_chs:
            self.shortcut = nn.Conv2d(in_chs, out_chs, 1, stride, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = torch.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(act)
        out = self.conv1(act)
        out = self.conv2(self.drop(torch.relu(self.bn2(out))))
        return out + skip


class WideResNet(nn.Module):
    """WRN-``depth``-``widen_factor`` for CIFAR-sized inputs, with timm's model interface."""

    def __init__(self, depth: int = 28, widen_factor: int = 8, num_classes: int = 100,
                 in_chans: int = 3, drop_rate: float = 0.0, bn_momentum: float = BN_MOMENTUM,
                 global_pool: str = "avg"):
        super().__init__()
        if (depth - 4) % 6 or depth < 10:
            raise HafclsError(
                f"A wide ResNet's depth must be 6n + 4 (10, 16, 22, 28, ...), got {depth}.",
                "use depth=28 (WRN-28-k).",
            )
        blocks = (depth - 4) // 6
        widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.grad_checkpointing = False
        self.stem = nn.Conv2d(in_chans, 16, 3, 1, 1, bias=False)
        stages, in_chs, self.feature_info = [], 16, []
        for i, (width, stride) in enumerate(zip(widths, (1, 2, 2))):
            stage = [PreActBlock(in_chs if j == 0 else width, width, stride if j == 0 else 1,
                                 drop_rate, bn_momentum) for j in range(blocks)]
            stages.append(nn.Sequential(*stage))
            in_chs = width
            self.feature_info.append(dict(num_chs=width, reduction=2 ** i, module=f"stages.{i}"))
        self.stages = nn.Sequential(*stages)
        self.norm = nn.BatchNorm2d(in_chs, momentum=bn_momentum)
        self.num_features = self.head_hidden_size = in_chs
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.fc = nn.Linear(in_chs, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        # the WRN reference initialisation: He-normal (fan-out) convolutions, BN at 1/0, zero bias
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ timm interface
    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(stem=r"^stem", blocks=r"^stages\.(\d+)" if coarse else
                    r"^stages\.(\d+)\.(\d+)")

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last map after the final BN-ReLU (N x 64k x H/4 x W/4)."""
        x = self.stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            from timm.models import checkpoint_seq

            x = checkpoint_seq(self.stages, x)
        else:
            x = self.stages(x)
        return torch.relu(self.norm(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _cfg(**kwargs) -> dict:
    return dict(url="", num_classes=100, input_size=(3, 32, 32), pool_size=(8, 8), crop_pct=1.0,
                interpolation="bilinear", mean=CIFAR100_MEAN, std=CIFAR100_STD,
                first_conv="stem", classifier="fc", license="none (no weights)", **kwargs)


default_cfgs = generate_default_cfgs({
    "wide_resnet28_8.untrained": _cfg(),
    "wide_resnet28_10.untrained": _cfg(),
})


def _create(variant: str, pretrained: bool, **kwargs) -> WideResNet:
    return build_model_with_cfg(WideResNet, variant, pretrained,
                                feature_cfg=dict(flatten_sequential=True, out_indices=(0, 1, 2)),
                                **kwargs)


@register_model
def wide_resnet28_8(pretrained: bool = False, **kwargs) -> WideResNet:
    """WRN-28-8 (widths 128/256/512, BN momentum 0.001): HAFrame's CIFAR-100 backbone."""
    return _create("wide_resnet28_8", pretrained, **dict(dict(depth=28, widen_factor=8), **kwargs))


@register_model
def wide_resnet28_10(pretrained: bool = False, **kwargs) -> WideResNet:
    """WRN-28-10 (widths 160/320/640), the WRN paper's 36.5M-parameter CIFAR model."""
    return _create("wide_resnet28_10", pretrained,
                   **dict(dict(depth=28, widen_factor=10), **kwargs))
