"""StyleGAN2's generator and a residual discriminator, small enough to train on 2 CPU cores.

Read top to bottom: equalised-learning-rate layers, the fixed FIR upsampler, the modulated
convolution, the mapping network, the synthesis network, the generator that joins them (with
truncation and style mixing as ordinary tensor inputs), and the discriminator.

Every op exports to ONNX with a dynamic batch: the modulated convolution uses the
"non-fused" form (scale the activations by the style, convolve with the shared weight, scale
by the demodulation coefficients) instead of a grouped convolution whose group count is the
batch; the FIR filter is a fixed depthwise transposed convolution (groups = channels, not
batch); and in eval mode (export, sampling) the per-layer noise is a fixed buffer, so the
graph draws no random numbers.

Over 400 lines on purpose: generator and discriminator in one file, readable top to bottom,
as nanoGPT's model.py is; the export-only portable path sits beside the op it replaces.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gankit.train.distributed import draw_rows

SQRT2 = math.sqrt(2.0)


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8, *, portable: bool = False) -> torch.Tensor:
    """Scale each row to unit mean square (StyleGAN's "pixel norm" of z and of embeddings).

    ``portable`` (the export copy's, see ``portable`` below) takes the mean as a product with a
    column of 1/C: OpenCV's classic ONNX importer has no shape for a 2-D tensor with a dynamic
    batch and refuses a ReduceMean on it, and it folds a constant input (the file's default
    z2) through Reshape without resolving the -1, so neither a plain nor a reshaped mean loads.
    The product is the same mean up to float rounding (summation order). It also floors the
    mean at ``eps`` instead of adding it: torch's ONNX optimiser drops an Add of 1e-8 as if it
    were 0, which made an all-zero row (the file's default z2) NaN; the two agree exactly
    whenever the mean is at least 0.25 (1e-8 is then under half a float32 ulp).
    """
    if portable:
        ms = x.square() @ torch.full((x.shape[1], 1), 1.0 / x.shape[1], dtype=x.dtype, device=x.device)
        return x * ms.clamp_min(eps).rsqrt()
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def lrelu(x: torch.Tensor) -> torch.Tensor:
    # the sqrt(2) gain keeps the activations' second moment through the leaky ReLU (He et al.)
    return F.leaky_relu(x, 0.2) * SQRT2


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: weights stored N(0, 1/lr_mul^2), scaled at run time.

    Adam's step is about the same size for every parameter, so storing the weights at unit
    scale and multiplying by He's constant in the forward pass gives every layer the same
    effective learning rate (Karras et al. 2018). ``lr_mul`` slows a layer down (0.01 in the
    mapping network).
    """

    def __init__(self, cin: int, cout: int, *, bias_init: float = 0.0, lr_mul: float = 1.0, activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin) / lr_mul)
        self.bias = nn.Parameter(torch.full([cout], float(bias_init) / lr_mul))
        self.w_gain, self.b_gain, self.activate = lr_mul / math.sqrt(cin), lr_mul, activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.w_gain, self.bias * self.b_gain)
        return lrelu(x) if self.activate else x


class EqualConv2d(nn.Module):
    """Convolution with equalised learning rate ('same' padding), optionally followed by lrelu."""

    def __init__(self, cin: int, cout: int, kernel: int, *, bias: bool = True, activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.gain, self.padding, self.activate = 1 / math.sqrt(cin * kernel * kernel), kernel // 2, activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight * self.gain, self.bias, padding=self.padding)
        return lrelu(x) if self.activate else x


class Upsample2x(nn.Module):
    """2x upsampling with StyleGAN's [1, 3, 3, 1] FIR filter, as a fixed depthwise transposed conv.

    Zero insertion followed by the separable filter is exactly a stride-2 transposed
    convolution with the filter's outer product as kernel; with ``groups = channels`` it is a
    plain ONNX ConvTranspose (no custom op). The kernel sums to 4, undoing the zero
    insertion's 1/4 density, so a constant image stays constant.

    ``portable`` (the export copy) computes the same thing as nearest-neighbour 2x upsampling
    followed by a depthwise 3x3 convolution with ``[1, 2, 1]`` outer ``[1, 2, 1]`` / 16 (zero
    padding): each output pixel is (3 x[m] + x[m -/+ 1]) / 4 along each axis either way. The
    reason is speed: oneDNN has no bf16 kernel for a depthwise *transposed* convolution, and
    PyTorch's and OpenVINO's fallback made the whole bf16 generator 5x slower than fp32
    (benchmarks/RESULTS.md), while Resize and a depthwise convolution are fast in every backend.
    Training keeps the transposed form, so trained runs and their seeded results do not change.
    """

    portable = False  # True on the export copy (StyleGANFamily.export_module)

    def __init__(self, channels: int):
        super().__init__()
        f = torch.tensor([1.0, 3.0, 3.0, 1.0])
        k = torch.outer(f, f) / 16.0
        self.register_buffer("kernel", k.expand(channels, 1, 4, 4).contiguous(), persistent=False)
        g = torch.tensor([1.0, 2.0, 1.0])
        k3 = torch.outer(g, g) / 16.0
        self.register_buffer("kernel3", k3.expand(channels, 1, 3, 3).contiguous(), persistent=False)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.portable:
            up = F.interpolate(x, scale_factor=2.0, mode="nearest")
            return F.conv2d(up, self.kernel3, padding=1, groups=self.channels)
        return F.conv_transpose2d(x, self.kernel, stride=2, padding=1, groups=self.channels)


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, *, demodulate: bool = True,
                     padding: int = 0, upsample: Upsample2x | None = None, eps: float = 1e-8,
                     portable: bool = False) -> torch.Tensor:
    """StyleGAN2's modulated convolution in its non-fused form.

    ``x`` [N, Cin, H, W], ``weight`` [Cout, Cin, k, k] (already scaled), ``styles`` [N, Cin].
    The fused form folds the styles into one weight per sample and runs a grouped
    convolution with ``groups = N``, which freezes the batch when traced. Scaling the
    input channels by the style, convolving with the shared weight and then scaling each
    output channel by its demodulation coefficient is the same computation, and every step
    is batch-agnostic. Demodulation divides output channel o of sample n by
    ``sqrt(sum_{i,k} (w[o,i,k] * s[n,i])^2)``, computed as ``s^2 @ sum_k w^2``.

    ``portable`` (export) makes [N, C] -> [N, C, 1, 1] a Reshape to a constant shape instead of
    an Unsqueeze of two axes, which OpenCV's classic ONNX importer does not implement (same numbers).
    """
    def per_channel(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(-1, t.shape[1], 1, 1) if portable else t[:, :, None, None]

    x = x * per_channel(styles)
    if upsample is not None:  # per-channel scaling commutes with the depthwise FIR
        x = upsample(x)
    x = F.conv2d(x, weight, padding=padding)
    if demodulate:
        coef = (styles.square() @ weight.square().sum(dim=(2, 3)).t() + eps).rsqrt()  # [N, Cout]
        x = x * per_channel(coef)
    return x


class ModulatedConv(nn.Module):
    """A modulated convolution with its own style affine (w -> per-input-channel scales, bias 1)."""

    portable = False  # True on the export copy (StyleGANFamily.export_module): see modulated_conv2d

    def __init__(self, cin: int, cout: int, kernel: int, w_dim: int, *, demodulate: bool = True, up: bool = False):
        super().__init__()
        self.affine = EqualLinear(w_dim, cin, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.gain, self.padding, self.demodulate = 1 / math.sqrt(cin * kernel * kernel), kernel // 2, demodulate
        self.up = Upsample2x(cin) if up else None

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w)
        weight = self.weight * self.gain
        return modulated_conv2d(x, weight, styles, demodulate=self.demodulate, padding=self.padding, upsample=self.up,
                                portable=self.portable)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally after 2x upsampling) + noise with a learned strength + bias + lrelu.

    Training draws fresh noise per call (from torch's global generator, which checkpoints save,
    so resuming stays exact; drawn for the whole global batch and sliced, see
    ``gankit.train.distributed.draw_rows``, so it does not depend on the world size); eval mode - sampling, evaluation, export - adds the fixed
    ``noise_const`` buffer instead, so the exported graph has no random op and the same z
    always gives the same image.
    """

    def __init__(self, cin: int, cout: int, w_dim: int, size: tuple[int, int], *, up: bool, noise_seed: int):
        super().__init__()
        self.conv = ModulatedConv(cin, cout, 3, w_dim, up=up)
        self.bias = nn.Parameter(torch.zeros(cout))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        g = torch.Generator().manual_seed(noise_seed)
        self.register_buffer("noise_const", torch.randn(1, 1, *size, generator=g))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        x = self.conv(x, w)
        if self.training:
            noise = injection_noise(x)
        else:
            noise = self.noise_const
        x = x + noise * self.noise_strength
        return lrelu(x + self.bias[None, :, None, None])


def injection_noise(x: torch.Tensor) -> torch.Tensor:
    """Per-pixel noise [N, 1, H, W] for a training batch ``x`` (its rows of the global batch's draw)."""
    return draw_rows(x.shape[0], lambda m: torch.randn(m, 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype))


def mixing_draws(z: torch.Tensor, num_layers: int, mixing_prob: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Style mixing's random second latents and crossover layers for the training batch ``z``.

    Each is drawn for the whole global batch and sliced to ``z``'s rows, in the order z2, cut,
    keep (so one process draws exactly what it always did), from torch's global generator.
    """
    n = z.shape[0]
    z2 = draw_rows(n, lambda m: torch.randn((m, *z.shape[1:]), device=z.device, dtype=z.dtype))
    cut = draw_rows(n, lambda m: torch.randint(1, num_layers, (m,), device=z.device)) if num_layers > 1 \
        else torch.zeros(n, dtype=torch.long, device=z.device)
    keep = draw_rows(n, lambda m: torch.rand(m, device=z.device)) >= mixing_prob
    return z2, torch.where(keep, torch.full_like(cut, num_layers), cut)


class ToRGB(nn.Module):
    """Modulated 1x1 conv to image channels, without demodulation (StyleGAN2's skip outputs)."""

    def __init__(self, cin: int, channels: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv(cin, channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias[None, :, None, None]


def plan_levels(height: int, width: int, max_doublings: int = 3, min_side: int = 3) -> tuple[int, int, int]:
    """(doublings, base height, base width): the most 2x steps (at most ``max_doublings``) that
    divide both sides and leave a base of at least ``min_side`` (28 -> 7, 14, 28; 32 -> 4..32)."""
    k = 0
    while (k < max_doublings and height % 2 ** (k + 1) == 0 and width % 2 ** (k + 1) == 0
           and height // 2 ** (k + 1) >= min_side and width // 2 ** (k + 1) >= min_side):
        k += 1
    return k, height // 2**k, width // 2**k


def level_channels(config: dict, levels: int) -> list[int]:
    """Channels at each resolution, coarse to fine: ``g_channels`` halving per level, at least ``g_min_channels``."""
    top, low = int(config.get("g_channels", 64)), int(config.get("g_min_channels", 16))
    return [max(low, top >> i) for i in range(levels + 1)]


class MappingNetwork(nn.Module):
    """z (and label) -> w: normalised z through ``mapping_layers`` equalised-lr layers (lr x 0.01).

    The label's embedding enters additively through its own first-layer weights (the same as
    concatenating [z, embed] in front of one linear layer), which also lets a single z row
    broadcast against a batch of labels in the exported graph.
    """

    portable = False  # True on the export copy (StyleGANFamily.export_module): see normalize_2nd_moment

    def __init__(self, z_dim: int, w_dim: int, layers: int, num_classes: int, lr_mul: float = 0.01):
        super().__init__()
        self.num_classes = num_classes
        self.fc_z = EqualLinear(z_dim, w_dim, lr_mul=lr_mul)
        if num_classes:
            self.embed = nn.Parameter(torch.randn(num_classes, w_dim))
            self.fc_y = EqualLinear(w_dim, w_dim, lr_mul=lr_mul)
        self.rest = nn.ModuleList(EqualLinear(w_dim, w_dim, lr_mul=lr_mul, activate=True) for _ in range(layers - 1))

    def forward(self, z: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        x = self.fc_z(normalize_2nd_moment(z, portable=self.portable))
        if self.num_classes:
            # portable: F.embedding exports as Gather, indexing a parameter as GatherND, which
            # OpenCV's classic importer refuses (same rows either way)
            e = F.embedding(label, self.embed) if self.portable else self.embed[label]
            x = x + self.fc_y(normalize_2nd_moment(e, portable=self.portable))
        x = lrelu(x)
        for layer in self.rest:
            x = layer(x)
        return x


class SynthesisNetwork(nn.Module):
    """Learned constant -> one modulated conv per resolution (``base_convs`` at the base), skip toRGB.

    ``ws`` [N, num_layers, w_dim]: one w per conv layer; each resolution's toRGB uses the w
    of that resolution's last conv.
    """

    portable = False  # True on the export copy (StyleGANFamily.export_module): see forward

    def __init__(self, config: dict):
        super().__init__()
        c, h, w = int(config["channels"]), int(config["height"]), int(config["width"])
        w_dim = int(config["w_dim"])
        k, h0, w0 = plan_levels(h, w)
        chans = level_channels(config, k)
        self.const = nn.Parameter(torch.randn(chans[0], h0, w0))
        self.layers = nn.ModuleList()
        self.to_rgb = nn.ModuleList()
        self.rgb_layer: list[int] = []  # which conv layer's w each toRGB uses
        self.ups = nn.ModuleList()
        cin = chans[0]
        for level in range(k + 1):
            size = (h0 * 2**level, w0 * 2**level)
            convs = max(1, int(config.get("base_convs", 1))) if level == 0 else 1
            for j in range(convs):
                up = level > 0 and j == 0
                self.layers.append(SynthesisLayer(cin, chans[level], w_dim, size, up=up,
                                                  noise_seed=1000 + len(self.layers)))
                cin = chans[level]
            self.to_rgb.append(ToRGB(cin, c, w_dim))
            self.rgb_layer.append(len(self.layers) - 1)
            if level > 0:
                self.ups.append(Upsample2x(c))
        self.num_layers = len(self.layers)

    def forward(self, ws: torch.Tensor) -> torch.Tensor:
        if self.portable:
            # export: the first modulated conv multiplies x by the [N, C] styles, which broadcasts
            # a batch-1 constant to N with the same numbers; repeat(ws.shape[0]) would put a
            # Shape op on the dynamic batch in the graph, which OpenCV's classic importer refuses
            x = self.const.unsqueeze(0)
        else:
            # a copy, not an expand view: a view of a parameter made under no_grad still "requires
            # grad" without a grad_fn, which autograd hooks (e.g. torch's FLOP counter) refuse
            x = self.const.unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
        img = None
        r = 0
        for i, layer in enumerate(self.layers):
            w = ws[i] if isinstance(ws, list) else ws[:, i]  # a list: Generator.layer_styles
            x = layer(x, w)
            if r < len(self.rgb_layer) and self.rgb_layer[r] == i:
                y = self.to_rgb[r](x, w)
                img = y if img is None else self.ups[r - 1](img) + y
                r += 1
        return torch.tanh(img)


class Generator(nn.Module):
    """z [, label] [, z2, crossover, truncation] -> image in [-1, 1].

    - ``truncation`` psi (scalar or [N]): w <- w_avg + psi (w - w_avg); None or 1 = no truncation.
    - ``z2`` and ``crossover`` c (scalar or [N], int): layers ``>= c`` take their style from z2's w
      (coarse styles from z, fine from z2); c = num_layers (or None) means no mixing.
    - In training mode the forward pass also updates ``w_avg`` (moving average of w) and, with
      probability ``mixing_prob``, mixes each sample with a random second z at a random layer
      (style-mixing regularisation), drawing from torch's global generator (checkpointed).
    """

    portable = False  # True on the export copy (StyleGANFamily.export_module): see layer_styles

    def __init__(self, config: dict):
        super().__init__()
        self.z_dim, self.w_dim = int(config["latent_dim"]), int(config["w_dim"])
        self.num_classes = int(config.get("num_classes", 0) or 0) if config.get("conditional", False) else 0
        self.mapping = MappingNetwork(self.z_dim, self.w_dim, int(config.get("mapping_layers", 2)), self.num_classes)
        self.synthesis = SynthesisNetwork(config)
        self.num_layers = self.synthesis.num_layers
        self.mixing_prob = float(config.get("style_mixing", 0.9))
        self.w_avg_beta = float(config.get("w_avg_beta", 0.995))
        self.register_buffer("w_avg", torch.zeros(self.w_dim))
        self.register_buffer("layer_index", torch.arange(self.num_layers).view(1, -1, 1))
        self.register_buffer("pl_mean", torch.zeros([]))  # path-length regulariser's running mean

    def styles(self, z, label=None, z2=None, crossover=None, truncation=None) -> torch.Tensor:
        """ws [N, num_layers, w_dim] for the inputs (see the class docstring)."""
        w = self.mapping(z, label)
        if self.training:
            with torch.no_grad():
                # in fp32 whatever the forward pass's autocast dtype (bf16 training): the buffer is fp32
                self.w_avg.copy_(w.detach().float().mean(0).lerp(self.w_avg, self.w_avg_beta))
            if z2 is None and crossover is None and self.mixing_prob > 0:
                z2, crossover = mixing_draws(z, self.num_layers, self.mixing_prob)
        ws = w.unsqueeze(1)
        if z2 is not None:
            w2 = self.mapping(z2, label).unsqueeze(1)
            if crossover is None:
                crossover = torch.full([], self.num_layers, dtype=torch.long, device=z.device)
            ws = torch.where(self.layer_index < crossover.reshape(-1, 1, 1), ws, w2)
        ws = ws.expand(-1, self.num_layers, -1) if ws.shape[1] == 1 else ws
        if truncation is not None:
            psi = truncation.reshape(-1, 1, 1).to(ws.dtype) if isinstance(truncation, torch.Tensor) else float(truncation)
            ws = self.w_avg + psi * (ws - self.w_avg)
        return ws

    def layer_styles(self, z, label=None, z2=None, crossover=None, truncation=None) -> list[torch.Tensor]:
        """The export copy's :meth:`styles` (eval mode): one [N, w_dim] w per layer, same numbers.

        OpenCV's classic ONNX importer cannot broadcast [N, 1, w_dim] against [1, layers, 1]
        (a Where or a product), so the layers' w's are never stacked: each one mixes w and w2
        with a 0/1 factor, ``w * m + w2 * (1 - m)``, which is w or w2 exactly (for finite w's),
        then truncates as :meth:`styles` does. A scalar crossover or psi (the file's) is used as
        it is: the importer folds a Reshape of a constant to [-1, 1] without resolving the -1.
        """
        def column(t):  # scalar stays scalar, [N] -> [N, 1]
            return t if not isinstance(t, torch.Tensor) or t.dim() == 0 else t.reshape(-1, 1)

        w = self.mapping(z, label)
        w2 = self.mapping(z2, label) if z2 is not None else None
        cut = column(crossover if crossover is not None else self.num_layers)
        psi = column(truncation)
        psi = psi.to(w.dtype) if isinstance(psi, torch.Tensor) else psi
        out = []
        for i in range(self.num_layers):
            wi = w
            if w2 is not None:
                m = torch.as_tensor(cut > i).to(w.dtype)
                wi = w * m + w2 * (1 - m)
            if psi is not None:
                wi = self.w_avg + psi * (wi - self.w_avg)
            out.append(wi)
        return out

    def forward(self, z, label=None, z2=None, crossover=None, truncation=None) -> torch.Tensor:
        if self.portable and not self.training:
            return self.synthesis(self.layer_styles(z, label, z2, crossover, truncation))
        return self.synthesis(self.styles(z, label, z2, crossover, truncation))


def minibatch_std(x: torch.Tensor, group: int = 4) -> torch.Tensor:
    """Append one channel: the mean standard deviation over groups of ``group`` samples.

    A discriminator that sees the spread of a group can tell a collapsed generator from a
    varied one (Karras et al. 2018). The group is the largest divisor of N not above ``group``.
    """
    n, c, h, w = x.shape
    g = max(d for d in range(1, min(group, n) + 1) if n % d == 0)
    y = x.reshape(g, n // g, c, h, w)
    y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()  # [n/g, c, h, w]
    y = y.mean(dim=(1, 2, 3)).reshape(-1, 1, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)


class ResidualBlockD(nn.Module):
    """3x3 conv -> 2x average-pool -> 3x3 conv, plus a pooled 1x1 skip, summed with 1/sqrt(2)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv0 = EqualConv2d(cin, cin, 3, activate=True)
        self.conv1 = EqualConv2d(cin, cout, 3, activate=True)
        self.skip = EqualConv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip(F.avg_pool2d(x, 2))
        x = self.conv1(F.avg_pool2d(self.conv0(x), 2))
        return (x + skip) / SQRT2


class Discriminator(nn.Module):
    """Residual D: fromRGB, residual blocks down to the base resolution, minibatch stddev,
    one 3x3 conv, two linear layers. Conditional: projection of the final features onto a
    learned class embedding (Miyato & Koyama 2018), as StyleGAN2-ADA's conditional D."""

    def __init__(self, config: dict):
        super().__init__()
        c, h, w = int(config["channels"]), int(config["height"]), int(config["width"])
        k, h0, w0 = plan_levels(h, w)
        chans = list(reversed(level_channels({"g_channels": config.get("d_channels", 64),
                                              "g_min_channels": config.get("d_min_channels", 16)}, k)))
        self.from_rgb = EqualConv2d(c, chans[0], 1, activate=True)
        self.blocks = nn.Sequential(*(ResidualBlockD(chans[i], chans[i + 1]) for i in range(k)))
        top = chans[-1]
        self.conv = EqualConv2d(top + 1, top, 3, activate=True)
        self.fc = EqualLinear(top * h0 * w0, top, activate=True)
        self.num_classes = int(config.get("num_classes", 0) or 0) if config.get("conditional", False) else 0
        if self.num_classes:
            self.out = EqualLinear(top, top)
            self.embed = nn.Parameter(torch.randn(self.num_classes, top))
        else:
            self.out = EqualLinear(top, 1)

    def forward(self, x: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        x = self.blocks(self.from_rgb(x))
        x = self.fc(self.conv(minibatch_std(x)).flatten(1))
        if self.num_classes:
            e = normalize_2nd_moment(self.embed[label])
            return (self.out(x) * e).sum(dim=1) / math.sqrt(e.shape[1])
        return self.out(x).squeeze(1)


def count_layers(config: dict) -> int:
    """How many w's the synthesis network takes (one per modulated 3x3 conv) for ``config``."""
    k, _, _ = plan_levels(int(config["height"]), int(config["width"]))
    return max(1, int(config.get("base_convs", 1))) + k


def coarse_layers(config: dict) -> int:
    """The layers of the coarse half of the resolutions: the mixing grid's default crossover."""
    k, _, _ = plan_levels(int(config["height"]), int(config["width"]))
    return max(1, int(config.get("base_convs", 1))) + max(0, (k + 1) // 2 - 1)
