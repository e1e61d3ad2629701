"""Independent PyTorch networks for checking the checkpoint importers.

`ReActNetAReference` is ReActNet-A written from docs/method.md §2 with the official module names,
so its ``state_dict()`` has exactly the keys of an AdamBNN checkpoint (docs/method.md §5).
`ResNet34Reference` follows torchvision's ResNet-34 layout and key names (torchvision itself is
not installed). Both run in float32 or float64 (``.double()``) and share no code with the Keras
models.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

REACTNET_A_CHANNELS = (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)


class Margins:
    """Collects, per sample, the smallest |input| of every sign of one forward pass.

    A binary network's output jumps when a sign input crosses 0, so two implementations can
    only be compared exactly on samples whose sign inputs all stay clear of 0.
    """

    def __init__(self) -> None:
        self.per_sign: list[torch.Tensor] = []

    def sign(self, x: torch.Tensor) -> torch.Tensor:
        self.per_sign.append(x.detach().abs().flatten(1).amin(dim=1))
        return torch.sign(x)

    def smallest(self) -> torch.Tensor:
        return torch.stack(self.per_sign).amin(dim=0)


class LearnableBias(nn.Module):
    """x + b with one b per channel, stored as (1, C, 1, 1) like the official move11..move23."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class BinaryConv(nn.Module):
    """Conv with symmetric zero padding k // 2 and no bias; weight stored as (O, I, k, k).

    ``mode="binary"``: alpha_o * sign(W) with alpha_o = mean |W_o| over (I, k, k) (step 2).
    ``mode="real"``: W itself (step 1, and the released models whose weights are already ±1).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(out_channels, in_channels, kernel_size, kernel_size))
        self.stride = stride
        self.padding = kernel_size // 2
        self.mode = "binary"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        if self.mode == "binary":
            alpha = weight.abs().mean(dim=(1, 2, 3), keepdim=True)
            weight = alpha * torch.sign(weight)
        return F.conv2d(x, weight, stride=self.stride, padding=self.padding)


class Stem(nn.Module):
    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, out_channels, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, margins: Margins) -> torch.Tensor:
        return self.bn1(self.conv1(x))


class Block(nn.Module):
    """One ReActNet-A block C -> P (docs/method.md §2), official attribute names."""

    def __init__(self, channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        c = channels
        self.stride = stride
        self.move11 = LearnableBias(c)
        self.binary_3x3 = BinaryConv(c, c, 3, stride)
        self.bn1 = nn.BatchNorm2d(c)
        self.move12 = LearnableBias(c)
        self.prelu1 = nn.PReLU(c)
        self.move13 = LearnableBias(c)
        self.move21 = LearnableBias(c)
        self.doubles = out_channels == 2 * c
        if self.doubles:
            self.binary_pw_down1 = BinaryConv(c, c, 1, 1)
            self.binary_pw_down2 = BinaryConv(c, c, 1, 1)
            self.bn2_1 = nn.BatchNorm2d(c)
            self.bn2_2 = nn.BatchNorm2d(c)
        else:
            assert out_channels == c
            self.binary_pw = BinaryConv(c, c, 1, 1)
            self.bn2 = nn.BatchNorm2d(c)
        self.move22 = LearnableBias(out_channels)
        self.prelu2 = nn.PReLU(out_channels)
        self.move23 = LearnableBias(out_channels)

    def forward(self, x: torch.Tensor, margins: Margins) -> torch.Tensor:
        y = self.bn1(self.binary_3x3(margins.sign(self.move11(x))))
        shortcut = F.avg_pool2d(x, 2) if self.stride == 2 else x
        y = self.move13(self.prelu1(self.move12(y + shortcut)))
        a = margins.sign(self.move21(y))
        if self.doubles:
            out = torch.cat(
                [
                    self.bn2_1(self.binary_pw_down1(a)) + y,
                    self.bn2_2(self.binary_pw_down2(a)) + y,
                ],
                dim=1,
            )
        else:
            out = self.bn2(self.binary_pw(a)) + y
        return self.move23(self.prelu2(self.move22(out)))


class ReActNetAReference(nn.Module):
    """ReActNet-A (docs/method.md §2); ``state_dict()`` has the 298 official keys (without
    'module.')."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        c = REACTNET_A_CHANNELS
        self.feature = nn.ModuleList([Stem(c[0])])
        for i in range(1, len(c)):
            stride = 2 if c[i - 1] != c[i] and c[i] != 64 else 1
            self.feature.append(Block(c[i - 1], c[i], stride))
        self.fc = nn.Linear(c[-1], num_classes)

    def set_weight_mode(self, mode: str) -> None:
        """ "binary" for step 2, "real" for step 1 (or weights that are already ±1)."""
        for module in self.modules():
            if isinstance(module, BinaryConv):
                module.mode = mode

    def forward_with_margins(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and, per sample, the smallest |sign input| of the whole pass."""
        margins = Margins()
        for module in self.feature:
            x = module(x, margins)
        logits = self.fc(x.mean(dim=(2, 3)))
        return logits, margins.smallest()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_margins(x)[0]


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock: two 3x3 convs, stride on the first, ReLU after the add."""

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(y + shortcut)


class ResNet34Reference(nn.Module):
    """ResNet-34 with torchvision's key names (conv1, bn1, layer1.0.conv1, ..., fc)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        in_channels = 64
        for index, (channels, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)), start=1):
            stride = 1 if index == 1 else 2
            layer = nn.Sequential(
                *[
                    BasicBlock(
                        in_channels if b == 0 else channels, channels, stride if b == 0 else 1
                    )
                    for b in range(blocks)
                ]
            )
            setattr(self, f"layer{index}", layer)
            in_channels = channels
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(x, 3, stride=2, padding=1)
        for index in range(1, 5):
            x = getattr(self, f"layer{index}")(x)
        return self.fc(x.mean(dim=(2, 3)))
