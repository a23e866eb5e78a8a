"""PaletteNet (Cho et al. 2017): Feature Encoder, Recoloring Decoder, conditional Discriminator.

Shapes, for an input of H x W (padded internally to a multiple of 16, at least 32):

    Feature Encoder (image LAB, 3 channels, in the network range of backend.core.color)
      conv3x3 3->64, IN, LeakyReLU, max-pool   c4:  64 x H/2
      residual stage, stride 2                 c3: 128 x H/4
      residual stage, stride 2                 c2: 256 x H/8
      residual stage, stride 2                 c1: 512 x H/16
    Recoloring Decoder (P = the palette condition, tiled over the feature map: 18 numbers,
    or 36 with --condition source+target)
      [P, c1]     512+P -> 256, upsample       d1: 256 x H/8
      [c2, d1]      512 -> 128, upsample       d2: 128 x H/4
      [P, c3, d2] 256+P ->  64, upsample       d3:  64 x H/2
      [P, c4, d3] 128+P ->  64, upsample       d4:  64 x H
      [L, d4]        65 ->   2                 ab in the network range: tanh of it (the
                                               paper), or a base ab plus it (see `base`)
    Discriminator (LAB image + tiled palette, 21 channels) -> a grid of real/fake logits.

Upsampling is bilinear resize followed by convolution (no transposed convolutions, which
leave checkerboard artefacts), and the discriminator's last layer has no normalisation.

The decoder's normalisation is conditioned on the palette (instance norm whose scale and
shift come from the palette, as in FiLM / AdaIN). With plain instance norm, the tiled palette
adds a spatially constant term to each channel which the very next norm subtracts again, and
the per-image mean of every channel (the image's overall colour) is normalised away: the
network could not use the palette at all, and learned to predict grey (found in training,
architecture version 1).

Two conditions (PaletteNet(condition=...)):
  "target"         the paper's network: only the six target colours. It has to work out
                   from the image which of its colours each target colour replaces.
  "source+target"  also the six source colours they replace, entry by entry (what the editor
                   knows: the swatch the artist changed), given as target and target - source.
                   A swatch left alone then reads as "move nothing", which a target-only
                   network cannot tell from "move this colour here".

`base` says what the last convolution's output is added to (it starts at zero, so an
untrained network returns the base):
  "none"     nothing: ab = tanh(output), the paper's network.
  "source"   the source ab: the network predicts the change of colour.
  "palette"  a palette transfer of the source (source+target only): each palette colour's
             change is read as a turn and a scaling of its ab vector (a shift, for colours
             too grey to have a hue), every pixel's ab undergoes the changes of the palette
             colours it is near, blended by a softmax of -distance^2 / (2 * 8^2) in LAB.
             On its own this is a classical palette method that already beats Chang 2015
             on the benchmark; the network learns what it gets wrong.
Most of a recolouring is "move this pixel roughly with its palette colour"; a network that
predicts ab from scratch must first learn that, which took most of a short CPU run.
"""

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from backend.core.color import AB_SCALE, net_to_lab

ARCH_VERSION = 2
PALETTE_NUMBERS = 18  # six LAB colours
CONDITIONS = {"target": PALETTE_NUMBERS, "source+target": 2 * PALETTE_NUMBERS}
BASES = ("none", "source", "palette")
PRIOR_SIGMA = 8.0  # LAB units: how far a pixel's colour follows a palette colour's change
GREY_CHROMA = (5.0, 15.0)  # palette chroma below: its change is a shift; above: a turn
MAX_CHROMA_SCALE = 3.0


def conv_block(cin, cout, stride=1):
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1),
        nn.InstanceNorm2d(cout, affine=True),
        nn.LeakyReLU(0.2),
    )


class ResidualBlock(nn.Module):
    """conv-IN-LeakyReLU-conv-IN, plus a 1x1 stride-2 projection on the shortcut."""

    def __init__(self, cin, cout):
        super().__init__()
        self.body = nn.Sequential(
            conv_block(cin, cout, stride=2),
            nn.Conv2d(cout, cout, 3, 1, 1),
            nn.InstanceNorm2d(cout, affine=True),
        )
        self.shortcut = nn.Conv2d(cin, cout, 1, stride=2)

    def forward(self, x):
        return F.leaky_relu(self.body(x) + self.shortcut(x), 0.2)


class FeatureEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(conv_block(3, 64), nn.MaxPool2d(2))
        self.stage3 = ResidualBlock(64, 128)
        self.stage2 = ResidualBlock(128, 256)
        self.stage1 = ResidualBlock(256, 512)

    def forward(self, lab):
        c4 = self.stem(lab)
        c3 = self.stage3(c4)
        c2 = self.stage2(c3)
        c1 = self.stage1(c2)
        return c1, c2, c3, c4


class PaletteNorm(nn.Module):
    """Instance norm with a scale and shift predicted from the palette."""

    def __init__(self, channels, condition_numbers):
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.film = nn.Linear(condition_numbers, 2 * channels)
        nn.init.zeros_(self.film.weight)  # starts as a plain instance norm
        nn.init.zeros_(self.film.bias)

    def forward(self, x, palette):
        scale, shift = self.film(palette)[:, :, None, None].chunk(2, dim=1)
        return self.norm(x) * (1 + scale) + shift


class UpBlock(nn.Module):
    """Two 3x3 conv + palette-conditioned norm + LeakyReLU, then a bilinear doubling."""

    def __init__(self, cin, cout, condition_numbers):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm1 = PaletteNorm(cout, condition_numbers)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.norm2 = PaletteNorm(cout, condition_numbers)

    def forward(self, x, palette):
        x = F.leaky_relu(self.norm1(self.conv1(x), palette), 0.2)
        x = F.leaky_relu(self.norm2(self.conv2(x), palette), 0.2)
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def tile(palette, like):
    """(B, P) palette -> (B, P, h, w) matching the spatial size of `like`."""
    return palette[:, :, None, None].expand(-1, -1, like.shape[2], like.shape[3])


class RecoloringDecoder(nn.Module):
    def __init__(self, p=PALETTE_NUMBERS):
        super().__init__()
        self.up1 = UpBlock(p + 512, 256, p)
        self.up2 = UpBlock(256 + 256, 128, p)
        self.up3 = UpBlock(p + 128 + 128, 64, p)
        self.up4 = UpBlock(p + 64 + 64, 64, p)
        self.to_ab = nn.Conv2d(1 + 64, 2, 3, 1, 1)

    def forward(self, features, palette, lightness):
        c1, c2, c3, c4 = features
        d1 = self.up1(torch.cat([tile(palette, c1), c1], 1), palette)
        d2 = self.up2(torch.cat([c2, d1], 1), palette)
        d3 = self.up3(torch.cat([tile(palette, c3), c3, d2], 1), palette)
        d4 = self.up4(torch.cat([tile(palette, c4), c4, d3], 1), palette)
        return self.to_ab(torch.cat([lightness, d4], 1))


class PaletteNet(nn.Module):
    """LAB image (B, 3, H, W) and target palette (B, 18), both in the network range, plus the
    source palette (B, 18) for condition "source+target" -> ab (B, 2, H, W).

    The caller combines the predicted ab with the source L; any H and W work.
    """

    def __init__(self, condition="target", base="none"):
        super().__init__()
        if condition not in CONDITIONS:
            raise ValueError(f"condition {condition!r}: use one of {', '.join(CONDITIONS)}")
        if base not in BASES:
            raise ValueError(f"base {base!r}: use one of {', '.join(BASES)}")
        if base == "palette" and condition != "source+target":
            raise ValueError("base 'palette' needs condition 'source+target'")
        self.condition, self.base = condition, base
        self.encoder = FeatureEncoder()
        self.decoder = RecoloringDecoder(CONDITIONS[condition])
        if base != "none":
            nn.init.zeros_(self.decoder.to_ab.weight)
            nn.init.zeros_(self.decoder.to_ab.bias)

    @property
    def needs_source(self) -> bool:
        return self.condition == "source+target"

    def encode(self, lab) -> "EncodedImage":
        """LAB image (B, 3, H, W), network range -> what the decoder needs from it.

        The encoder does not see the palette, so one encoding serves any number of palettes
        (the daemon's live preview keeps it while the artist drags a swatch)."""
        height, width = lab.shape[2:]
        # A multiple of 16, and at least 32 so the deepest level keeps more than one pixel
        # for instance norm.
        pad_h, pad_w = max((-height) % 16, 32 - height), max((-width) % 16, 32 - width)
        if pad_h or pad_w:
            # Reflection keeps the image statistics that instance norm sees; it needs the pad
            # to be smaller than the image, so tiny inputs fall back to edge replication.
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            lab = F.pad(lab, (0, pad_w, 0, pad_h), mode=mode)
        return EncodedImage(lab, self.encoder(lab), (height, width))

    def decode(self, encoded: "EncodedImage", palette, source_palette=None):
        """An encoded image and palettes (B, 18) -> ab (B, 2, H, W), as forward."""
        target_palette = palette
        if self.needs_source:
            if source_palette is None:
                raise ValueError("this PaletteNet is conditioned on the source palette too")
            palette = torch.cat([palette, palette - source_palette], 1)
        lab = encoded.lab
        out = self.decoder(encoded.features, palette, lab[:, :1])
        if self.base == "none":
            ab = torch.tanh(out)
        else:
            base = lab[:, 1:]
            if self.base == "palette":
                base = palette_transfer(lab, source_palette, target_palette)
            ab = (base + out.float()).clamp(-1, 1)
        height, width = encoded.size
        return ab[:, :, :height, :width]

    def forward(self, lab, palette, source_palette=None):
        return self.decode(self.encode(lab), palette, source_palette)


@dataclass(frozen=True)
class EncodedImage:
    """PaletteNet.encode's result: the padded LAB input (B, 3, H', W'), the encoder's four
    feature maps (c1, c2, c3, c4) and the unpadded size (H, W)."""

    lab: torch.Tensor
    features: tuple
    size: tuple[int, int]

    @property
    def nbytes(self) -> int:
        return sum(t.element_size() * t.nelement() for t in (self.lab, *self.features))


def palette_transfer(lab, source_palette, target_palette, sigma=PRIOR_SIGMA):
    """Network-range LAB (B, 3, H, W) and palettes (B, 18) -> ab (B, 2, H, W): every pixel
    turned and scaled in ab as the palette colours near it are (softmax weights)."""
    with torch.autocast(lab.device.type, enabled=False):  # distances need float32
        pixels = net_to_lab(lab.float().permute(0, 2, 3, 1))  # (B, H, W, 3)
        source = net_to_lab(source_palette.float().view(-1, 1, 1, 6, 3))
        target = net_to_lab(target_palette.float().view(-1, 1, 1, 6, 3))
        distance2 = ((pixels[..., None, :] - source) ** 2).sum(-1)  # (B, H, W, 6)
        weights = torch.softmax(-distance2 / (2 * sigma**2), dim=-1)
        s, t, p = source[..., 1:], target[..., 1:], pixels[..., None, 1:]  # p: (B, H, W, 1, 2)
        s_chroma, t_chroma = s.norm(dim=-1), t.norm(dim=-1)
        turn = torch.atan2(t[..., 1], t[..., 0]) - torch.atan2(s[..., 1], s[..., 0])
        scale = (t_chroma / s_chroma.clamp_min(1e-6)).clamp(0, MAX_CHROMA_SCALE)
        cos, sin = torch.cos(turn) * scale, torch.sin(turn) * scale
        turned = torch.stack(
            [cos * p[..., 0] - sin * p[..., 1], sin * p[..., 0] + cos * p[..., 1]], -1
        )
        low, high = GREY_CHROMA
        chromatic = ((s_chroma - low) / (high - low)).clamp(0, 1)[..., None]
        moved = chromatic * turned + (1 - chromatic) * (p + t - s)  # (B, H, W, 6, 2)
        ab = (weights[..., None] * moved).sum(-2)
        return (ab / AB_SCALE).permute(0, 3, 1, 2)


class Discriminator(nn.Module):
    """Conditional PatchGAN: is this LAB image a real photo with this palette?"""

    def __init__(self):
        super().__init__()

        def down(cin, cout, norm=True):
            layers = [nn.Conv2d(cin, cout, 4, 2, 1)]
            if norm:
                layers.append(nn.InstanceNorm2d(cout, affine=True))
            return layers + [nn.LeakyReLU(0.2)]

        self.net = nn.Sequential(
            *down(3 + PALETTE_NUMBERS, 64, norm=False),
            *down(64, 128),
            *down(128, 256),
            *down(256, 512),
            nn.Conv2d(512, 1, 3, 1, 1),  # logits: no norm here, or they would be forced to 0
        )

    def forward(self, lab, palette):
        return self.net(torch.cat([lab, tile(palette, lab)], 1))
