"""DCGAN generator and discriminator (Radford, Metz & Chintala, 2015), optionally class-conditional.

Generator: z (+ label embedding) -> linear -> base x base feature map -> k x [4x4 transposed
convolution (x2), BatchNorm, ReLU] -> 3x3 conv -> tanh.

With ``cluster_sizes`` (the unconditional gan's pseudo-labels, see :mod:`gankit_gan.clusters`)
the generator also embeds the cluster its own z[:, 0] falls in, and the discriminator projects
the cluster like a class.

Discriminator: k x [4x4 stride-2 conv, (BatchNorm,) LeakyReLU 0.2] (+ ``extra_convs`` x [3x3
conv doubling the channels, (BatchNorm,) LeakyReLU] at the last resolution) (+ ``hidden`` units:
one fully-connected LeakyReLU layer, so the outputs are nonlinear in the whole feature map) ->
linear logit, with the minibatch standard deviation (Karras et al. 2018) as one more feature
map before the flattening. With ``num_classes > 0`` it is a projection discriminator (Miyato &
Koyama, 2018): the logit gets ``<embed(y), features>`` added. ``class_head=True`` adds
AC-GAN's auxiliary classifier (Odena et al., 2017) next to the real/fake logit. The
projection and the class head read the same (hidden, when there is one) features as the logit.
"""

from __future__ import annotations

import torch
from torch import nn


def plan(size: int) -> tuple[int, int]:
    """(base, number of x2 upsamplings) for an image side: halve while the side stays even and
    at least 4. 28 -> (7, 2), 64 -> (4, 4); a side that cannot be halved once (odd, or under 8)
    is refused."""
    n = 0
    while size % (2 ** (n + 1)) == 0 and size // (2 ** (n + 1)) >= 4:
        n += 1
    if n == 0:
        raise ValueError(f"image side {size} must be even and at least 8 (e.g. 28, 32, 64)")
    return size // 2**n, n


class Up(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Generator(nn.Module):
    def __init__(self, latent_dim=64, channels=1, size=28, width=32, num_classes=0,
                 cluster_sizes: list[float] | None = None):
        super().__init__()
        self.latent_dim, self.num_classes = latent_dim, num_classes
        # clusters (gankit_gan.clusters): z[:, 0] picks one, cut at the normal quantiles of their sizes
        self.code_embed = None
        self.onehot_lookup = False  # the export's form of the cluster lookup (see cluster_embedding)
        if cluster_sizes:
            from gankit_gan.clusters import slice_starts

            edges = torch.special.ndtri(torch.from_numpy(slice_starts(cluster_sizes)[1:-1]).clamp(1e-9, 1 - 1e-9))
            self.register_buffer("cluster_edges", edges.float())
            self.code_embed = nn.Embedding(len(cluster_sizes), latent_dim)
        self.base, n_up = plan(size)
        chans = [min(width * 2 ** (n_up - i), 512) for i in range(n_up + 1)]
        self.embed = nn.Embedding(num_classes, latent_dim) if num_classes else None
        in_dim = latent_dim * (1 + bool(num_classes) + bool(cluster_sizes))
        self.fc = nn.Sequential(
            nn.Linear(in_dim, chans[0] * self.base**2, bias=False),
            nn.BatchNorm1d(chans[0] * self.base**2),
            nn.ReLU(inplace=True),
        )
        self.c0 = chans[0]
        self.ups = nn.Sequential(*[Up(chans[i], chans[i + 1]) for i in range(n_up)])
        self.out = nn.Conv2d(chans[-1], channels, 3, 1, 1)

    def forward(self, z: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(label)], dim=1)
        if self.code_embed is not None:
            z = torch.cat([z, self.cluster_embedding(z)], dim=1)
        h = self.fc(z).view(-1, self.c0, self.base, self.base)
        return torch.tanh(self.out(self.ups(h)))

    def cluster_of(self, z: torch.Tensor) -> torch.Tensor:
        """The cluster z asks for: how many cluster edges its first entry lies above."""
        return (z[:, :1] > self.cluster_edges).sum(1)

    def cluster_embedding(self, z: torch.Tensor) -> torch.Tensor:
        """The embedding of z's cluster.

        Training looks it up by index. With ``onehot_lookup`` (set by the family's
        ``export_module``) it is a one-hot row times the embedding table instead: the same
        numbers (exactly one 1, the rest 0; NaN and infinite z too), in ONNX ops that OpenCV's
        DNN (both importers), onnx2torch and the rest all load (Greater, Cast, Max, Mul, Sub,
        MatMul), where the index form's ReduceSum over a broadcast comparison is refused by
        OpenCV's classic importer (and Pad, the obvious way to write the steps, by onnx2torch).
        Training keeps the lookup, whose gradient sums in another order than a matmul's, so
        seeded runs stay bit-identical.
        """
        if not self.onehot_lookup:
            return self.code_embed(self.cluster_of(z))
        # z is in cluster c when it lies above edge c-1 (always, for c = 0) and not above edge c
        # (never, for the last c): steps at [e0, e0, e1, ...] with the first forced to 1 by the
        # max, minus steps at [e0, ..., e_last, e_last] with the last forced to 0 by the product
        e = self.cluster_edges
        lower, upper = torch.cat([e[:1], e]), torch.cat([e, e[-1:]])
        first = torch.zeros_like(lower)
        first[0] = 1
        not_last = torch.ones_like(upper)
        not_last[-1] = 0
        z0 = z[:, :1]
        onehot = torch.maximum((z0 > lower).to(z.dtype), first) - (z0 > upper).to(z.dtype) * not_last
        return onehot @ self.code_embed.weight


class Discriminator(nn.Module):
    def __init__(self, channels=1, size=28, width=32, num_classes=0,
                 spectral_norm: bool = False, batchnorm: bool = True, class_head: bool = False,
                 extra_convs: int = 0, hidden: int = 0):
        super().__init__()
        _, n_down = plan(size)
        n_down = min(n_down, 4)
        self.num_classes = num_classes
        cin = channels
        norm = batchnorm and not spectral_norm

        def block(cin: int, cout: int, kernel: int, stride: int, norm: bool, bias: bool) -> list[nn.Module]:
            conv = nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, bias=bias)
            return [conv, *([nn.BatchNorm2d(cout)] if norm else []), nn.LeakyReLU(0.2, inplace=True)]

        layers, c = [], cin
        for i in range(n_down):  # 4x4 stride 2: halve the side
            cout = min(width * 2**i, 512)
            layers += block(c, cout, 4, 2, norm=i > 0 and norm, bias=i == 0 or spectral_norm)
            c = cout
        for _ in range(extra_convs):  # 3x3 stride 1 at the last side, doubling the channels
            cout = min(c * 2, 512)
            layers += block(c, cout, 3, 1, norm=norm, bias=not norm)
            c = cout
        self.features = nn.Sequential(*layers)
        side = size // 2**n_down
        flat = c * side * side + side * side  # + the minibatch-std map
        self.head = nn.Sequential(nn.Linear(flat, hidden), nn.LeakyReLU(0.2, inplace=True)) if hidden else None
        self.feat_dim = hidden or flat  # what the logit, the projection and the class head read
        self.fc = nn.Linear(self.feat_dim, 1)
        self.embed = nn.Embedding(num_classes, self.feat_dim) if num_classes else None
        # AC-GAN's auxiliary classifier (the trainer's ac_weight): a linear class head on the same
        # features; each forward leaves its logits in ``class_logits`` for the trainer to read
        self.classifier = nn.Linear(self.feat_dim, num_classes) if num_classes and class_head else None
        self.class_logits: torch.Tensor | None = None
        if self.embed is not None:  # unit-normal embeddings would swamp the logit at this width
            nn.init.xavier_uniform_(self.embed.weight)
        if spectral_norm:
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.utils.parametrizations.spectral_norm(m)

    def forward(self, x: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x)
        # minibatch standard deviation (Karras et al. 2018): lets D see a batch's diversity.
        # sqrt(var + eps): finite gradients where every sample agrees (R1 differentiates twice)
        std = h.var(dim=0, unbiased=False).add(1e-8).sqrt().mean(dim=0, keepdim=True)  # [1, H, W]
        h = torch.cat([h, std.expand(h.shape[0], 1, -1, -1)], dim=1)
        h = h.flatten(1)
        if self.head is not None:
            h = self.head(h)
        out = self.fc(h).squeeze(1)
        if self.classifier is not None:
            self.class_logits = self.classifier(h)
        if self.embed is not None:
            out = out + (self.embed(label) * h).sum(1)
        return out
