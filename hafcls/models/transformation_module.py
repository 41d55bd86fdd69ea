"""HAFrame's transformation module: residual PReLU blocks between the features and the frame.

ReLU/GELU backbones produce features biased towards non-negative values, while a frame's class
vectors point in every direction; PReLU learns a slope for negative inputs so the features can
reach them (Liang & Davis, ICCV 2023).
"""

from __future__ import annotations

from torch import Tensor, nn

from hafcls.errors import HafclsError

TRANSFORMS = ("prelu", "none")


class PReLUBlock(nn.Module):
    """``x + PReLU(BN(Linear(PReLU(BN(Linear(x))))))``, all linears ``dim -> dim`` without bias."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, dim, bias=False)
        self.bn1 = nn.BatchNorm1d(dim)
        self.act1 = nn.PReLU(dim)
        self.fc2 = nn.Linear(dim, dim, bias=False)
        self.bn2 = nn.BatchNorm1d(dim)
        self.act2 = nn.PReLU(dim)

    def forward(self, x: Tensor) -> Tensor:
        y = self.act1(self.bn1(self.fc1(x)))
        y = self.act2(self.bn2(self.fc2(y)))
        return x + y


class PReLUTransform(nn.Sequential):
    """``num_blocks`` residual :class:`PReLUBlock` in a row (the paper uses two)."""

    def __init__(self, dim: int, num_blocks: int = 2):
        super().__init__(*(PReLUBlock(dim) for _ in range(num_blocks)))
        self.dim = dim


def build_transform(name: str, dim: int) -> nn.Module:
    """``"prelu"``: :class:`PReLUTransform`; ``"none"``: identity (the ablation)."""
    if name == "prelu":
        return PReLUTransform(dim)
    if name == "none":
        return nn.Identity()
    raise HafclsError(
        f"Unknown transform {name!r}.", f"use one of {', '.join(TRANSFORMS)}."
    )
