"""The restoration generator and its patch discriminator.

Generator (EDSR/ESRGAN-like, small enough for a CPU): a 3x3 head, ``blocks`` residual blocks
(conv-ReLU-conv, no BatchNorm: normalisation statistics of a patch differ from those of a
whole image, which is what the runtime feeds), a conv closing the body's long skip, then
sub-pixel upsampling (conv to 4x the channels + PixelShuffle(2), once per factor 2; exported
as DepthToSpace) and a 3x3 tail whose output is *added* to the input enlarged by bicubic
interpolation (:class:`BicubicUpsample`: a fixed convolution, so any input size works). The tail starts at zero, so
an untrained generator is exactly the bicubic baseline and training learns the correction.

For scale 1 (denoising, deblurring, JPEG) the head is a stride-2 conv and the body runs at half
resolution (FFDNet's trick): a quarter of the cost per image, a receptive field twice as
wide, and PixelShuffle brings it back to full size. Inputs must then have even sides
(``gankit.size_multiple`` = 2 in the file).

Only Pad, convolutions, ReLU/LeakyReLU, DepthToSpace, Add and Clip: no shape arithmetic,
so the exported graph has dynamic height and width.

Discriminator: a PatchGAN (three stride-2 4x4 convs, then a 3x3 conv to one logit per patch);
``features`` returns its hidden activations for the generator's feature-matching loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualBlock(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, 1, 1)
        self.conv2 = nn.Conv2d(features, features, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


def _cubic(d: float, a: float = -0.75) -> float:
    """Keys' cubic convolution kernel with PyTorch's a = -0.75."""
    d = abs(d)
    if d <= 1:
        return (a + 2) * d**3 - (a + 3) * d**2 + 1
    return a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a if d < 2 else 0.0


class BicubicUpsample(nn.Module):
    """``F.interpolate(x, scale_factor=s, mode="bicubic")`` as edge padding, a fixed depthwise 5x5
    convolution (one filter per output phase) and PixelShuffle: the same numbers (within 3e-7),
    but ONNX Pad/Conv/DepthToSpace instead of a cubic Resize, which OpenCV's classic DNN importer
    refuses. Output pixel ``s*k + r`` samples the input at ``k + (r + 0.5)/s - 0.5`` (half-pixel
    centres); edge padding is PyTorch's clamping of indices at the border."""

    def __init__(self, channels: int, scale: int):
        super().__init__()
        taps = torch.tensor([[_cubic(t - ((r + 0.5) / scale - 0.5)) for t in range(-2, 3)] for r in range(scale)])
        taps = taps / taps.sum(1, keepdim=True)
        kernel = torch.einsum("ai,bj->abij", taps, taps).reshape(scale * scale, 1, 5, 5)
        # not persistent: a fixed function of the scale, rebuilt with the module, never in checkpoints
        self.register_buffer("kernel", kernel.repeat(channels, 1, 1, 1).float(), persistent=False)
        self.channels, self.scale = channels, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (2, 2, 2, 2), mode="replicate")
        return F.pixel_shuffle(F.conv2d(x, self.kernel, groups=self.channels), self.scale)


class RestoreGenerator(nn.Module):
    def __init__(self, channels: int = 3, scale: int = 2, features: int = 48, blocks: int = 6):
        super().__init__()
        if scale not in (1, 2, 4):
            raise ValueError(f"scale must be 1, 2 or 4, got {scale}")
        self.scale = scale
        self.enlarge = BicubicUpsample(channels, scale) if scale > 1 else nn.Identity()
        ups = 1 if scale == 1 else scale.bit_length() - 1  # PixelShuffle(2) stages
        self.head = nn.Conv2d(channels, features, 3, 2 if scale == 1 else 1, 1)
        self.body = nn.Sequential(*[ResidualBlock(features) for _ in range(blocks)])
        self.body_end = nn.Conv2d(features, features, 3, 1, 1)
        up: list[nn.Module] = []
        for _ in range(ups):
            up += [nn.Conv2d(features, 4 * features, 3, 1, 1), nn.PixelShuffle(2), nn.LeakyReLU(0.2)]
        self.up = nn.Sequential(*up)
        self.tail = nn.Conv2d(features, channels, 3, 1, 1)
        nn.init.zeros_(self.tail.weight)  # start as the classical enlargement (or the identity)
        nn.init.zeros_(self.tail.bias)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        base = self.enlarge(image)
        h = self.head(image)
        h = h + self.body_end(self.body(h))
        return torch.clamp(base + self.tail(self.up(h)), -1.0, 1.0)


class PatchDiscriminator(nn.Module):
    def __init__(self, channels: int = 3, width: int = 32, layers: int = 3):
        super().__init__()
        self.blocks = nn.ModuleList()
        c = channels
        for i in range(layers):
            cout = width * 2 ** i
            self.blocks.append(nn.Sequential(nn.Conv2d(c, cout, 4, 2, 1), nn.LeakyReLU(0.2)))
            c = cout
        self.out = nn.Conv2d(c, 1, 3, 1, 1)

    def features(self, image: torch.Tensor) -> list[torch.Tensor]:
        feats, h = [], image
        for block in self.blocks:
            h = block(h)
            feats.append(h)
        return feats

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(image)[-1])


# VGG19's convolutional part (Simonyan & Zisserman 2014), for users who have its weights: the
# layer list of torchvision's ``vgg19().features`` so its state dict ("features.N.weight") loads
_VGG19 = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512)


class VGGFeatures(nn.Module):
    """VGG19 up to conv5_4 before its ReLU (ESRGAN's perceptual layer), frozen, ImageNet-normalised."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in _VGG19:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, int(v), 3, 1, 1), nn.ReLU()]
                c = int(v)
        self.features = nn.Sequential(*layers[:-1])  # conv5_4's output, before the last ReLU
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x + 1) / 2
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        return self.features((x - self.mean) / self.std)


def load_vgg(path: str) -> VGGFeatures:
    """VGG19 features from a torchvision-layout state dict (``.pth`` or ``.safetensors``)."""
    net = VGGFeatures()
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    state = {k[len("features."):] if k.startswith("features.") else k: v for k, v in state.items()}
    own = net.features.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise ValueError(f"not a VGG19 state dict (missing {', '.join(missing[:3])}...)")
    net.features.load_state_dict({k: state[k] for k in own})
    return net.eval().requires_grad_(False)
