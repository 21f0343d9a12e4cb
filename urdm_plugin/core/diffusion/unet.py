"""A compact, fully convolutional UNet ε_θ(x_t, t) for single-channel abundance maps.

Input and output are (N, 1, H, W); H and W must be multiples of 4 (two down-samplings) —
callers pad with reflection. The shipped prior uses ``base_channels=16`` (widths 16/32/64,
0.34 M parameters, 80 kFLOP per pixel and evaluation); the class default 32 is the earlier
prior's width (1.18 M parameters, 319 kFLOP per pixel).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps t (N,) → (N, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, t_dim: int, groups: int = 8):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(groups, c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.temb = nn.Linear(t_dim, c_out)
        self.norm2 = nn.GroupNorm(min(groups, c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb(temb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class AbundanceUNet(nn.Module):
    """ε-prediction UNet: widths ``(c, 2c, 4c)`` at scales 1, 1/2, 1/4."""

    def __init__(self, base_channels: int = 32, t_dim: int = 128):
        super().__init__()
        c = base_channels
        self.config = {"base_channels": base_channels, "t_dim": t_dim}
        self.t_dim = t_dim
        self.tmlp = nn.Sequential(nn.Linear(t_dim, t_dim), nn.SiLU(), nn.Linear(t_dim, t_dim))
        self.inc = nn.Conv2d(1, c, 3, padding=1)
        self.d1 = ResBlock(c, c, t_dim)
        self.down1 = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.d2 = ResBlock(2 * c, 2 * c, t_dim)
        self.down2 = nn.Conv2d(2 * c, 4 * c, 3, stride=2, padding=1)
        self.mid1 = ResBlock(4 * c, 4 * c, t_dim)
        self.mid2 = ResBlock(4 * c, 4 * c, t_dim)
        self.up2 = nn.ConvTranspose2d(4 * c, 2 * c, 4, stride=2, padding=1)
        self.u2 = ResBlock(4 * c, 2 * c, t_dim)
        self.up1 = nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1)
        self.u1 = ResBlock(2 * c, c, t_dim)
        self.out_norm = nn.GroupNorm(8, c)
        self.out = nn.Conv2d(c, 1, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = self.tmlp(timestep_embedding(t, self.t_dim))
        h0 = self.d1(self.inc(x), temb)
        h1 = self.d2(self.down1(h0), temb)
        h = self.mid2(self.mid1(self.down2(h1), temb), temb)
        h = self.u2(torch.cat([self.up2(h), h1], dim=1), temb)
        h = self.u1(torch.cat([self.up1(h), h0], dim=1), temb)
        return self.out(F.silu(self.out_norm(h)))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
