"""The generators and discriminator are CycleGAN's (and pix2pix's U-Net), layer for layer."""
import pytest
import torch
from torch import nn

from duiit_fast import ops
from duiit_fast.models import InstanceNormAct, PatchDiscriminator, ResnetGenerator, UnetGenerator, \
    build_predictor, unet_depth


def cyclegan_resnet_generator(cin, cout, ngf, n_blocks):
    """CycleGAN's ResnetGenerator written with plain torch.nn (norm = InstanceNorm2d, affine=False,
    use_bias=True, padding 'reflect', no dropout) — the layer sequence our model must match."""
    IN = nn.InstanceNorm2d
    layers = [nn.ReflectionPad2d(3), nn.Conv2d(cin, ngf, 7, padding=0, bias=True), IN(ngf), nn.ReLU(True)]
    for i in range(2):
        m = 2 ** i
        layers += [nn.Conv2d(ngf * m, ngf * m * 2, 3, stride=2, padding=1, bias=True), IN(ngf * m * 2), nn.ReLU(True)]

    class Block(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.conv_block = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(d, d, 3, bias=True), IN(d), nn.ReLU(True),
                                            nn.ReflectionPad2d(1), nn.Conv2d(d, d, 3, bias=True), IN(d))

        def forward(self, x):
            return x + self.conv_block(x)

    layers += [Block(ngf * 4) for _ in range(n_blocks)]
    for i in range(2):
        m = 2 ** (2 - i)
        layers += [nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, stride=2, padding=1, output_padding=1, bias=True),
                   IN(ngf * m // 2), nn.ReLU(True)]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, cout, 7, padding=0), nn.Tanh()]
    return nn.Sequential(*layers)


class Pix2pixUnetBlock(nn.Module):
    """pix2pix's UnetSkipConnectionBlock with instance norm (use_bias=True), no dropout, written with
    plain torch.nn — in-place LeakyReLU included: the skip concatenates the *activated* input."""

    def __init__(self, outer, inner, cin=None, sub=None, outermost=False, innermost=False):
        super().__init__()
        self.outermost = outermost
        IN = nn.InstanceNorm2d
        downconv = nn.Conv2d(cin or outer, inner, 4, stride=2, padding=1, bias=True)
        if outermost:
            layers = [downconv, sub, nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1), nn.Tanh()]
        elif innermost:
            layers = [nn.LeakyReLU(0.2, True), downconv, nn.ReLU(True),
                      nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=True), IN(outer)]
        else:
            layers = [nn.LeakyReLU(0.2, True), downconv, IN(inner), sub, nn.ReLU(True),
                      nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=True), IN(outer)]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


def pix2pix_unet(cin, cout, num_downs, ngf):
    block = Pix2pixUnetBlock(ngf * 8, ngf * 8, innermost=True)
    for _ in range(num_downs - 5):
        block = Pix2pixUnetBlock(ngf * 8, ngf * 8, sub=block)
    block = Pix2pixUnetBlock(ngf * 4, ngf * 8, sub=block)
    block = Pix2pixUnetBlock(ngf * 2, ngf * 4, sub=block)
    block = Pix2pixUnetBlock(ngf, ngf * 2, sub=block)
    return Pix2pixUnetBlock(cout, ngf, cin=cin, sub=block, outermost=True)


def cyclegan_patchgan(cin, ndf, n_layers=3):
    IN = nn.InstanceNorm2d
    layers = [nn.Conv2d(cin, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
    mult = 1
    for n in range(1, n_layers):
        prev, mult = mult, min(2 ** n, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=True), IN(ndf * mult), nn.LeakyReLU(0.2, True)]
    prev, mult = mult, min(2 ** n_layers, 8)
    layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=True), IN(ndf * mult), nn.LeakyReLU(0.2, True)]
    layers += [nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
    return nn.Sequential(*layers)


def _copy_params(src: nn.Module, dst: nn.Module):
    src_p, dst_p = list(src.parameters()), list(dst.parameters())
    assert [p.shape for p in src_p] == [p.shape for p in dst_p]
    with torch.no_grad():
        for s, d in zip(src_p, dst_p):
            d.copy_(s)


def _layer_signature(module: nn.Module):
    """The sequence of leaf layers with their hyperparameters; a fused IN+act counts as IN, act."""
    sig = []
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            sig.append((type(m).__name__, m.in_channels, m.out_channels, m.kernel_size, m.stride,
                        m.padding, getattr(m, "output_padding", None), m.bias is not None))
        elif isinstance(m, nn.ReflectionPad2d):
            sig.append(("ReflectionPad2d", m.padding))
        elif isinstance(m, nn.InstanceNorm2d):
            sig.append(("InstanceNorm2d", m.num_features, m.affine))
        elif isinstance(m, InstanceNormAct):
            sig.append(("InstanceNorm2d", m.num_features, m.weight is not None))
            if m.act != "none":
                sig.append((m.act,) + ((m.slope,) if m.act == "leaky_relu" else ()))
        elif isinstance(m, nn.ReLU):
            sig.append(("relu",))
        elif isinstance(m, nn.LeakyReLU):
            sig.append(("leaky_relu", m.negative_slope))
        elif isinstance(m, nn.Tanh):
            sig.append(("Tanh",))
    return sig


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_generator_is_cyclegan_layer_for_layer(backend):
    ours = ResnetGenerator(1, 1, ngf=8, n_blocks=3)
    theirs = cyclegan_resnet_generator(1, 1, 8, 3)
    assert _layer_signature(ours) == _layer_signature(theirs)
    _copy_params(ours, theirs)
    x = torch.randn(2, 1, 32, 32)
    with ops.use_backend(backend):
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_discriminator_is_cyclegan_patchgan(backend):
    ours = PatchDiscriminator(1, ndf=8, n_layers=3)
    theirs = cyclegan_patchgan(1, 8, 3)
    assert _layer_signature(ours) == _layer_signature(theirs)
    _copy_params(ours, theirs)
    x = torch.randn(2, 1, 70, 70)
    with ops.use_backend(backend):
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-4)


def test_parameter_counts_match_cyclegan_logs():
    # CycleGAN prints 11.378 M for its 3-channel 9-block generator and 2.765 M for the PatchGAN.
    g = sum(p.numel() for p in ResnetGenerator(3, 3, 64, 9).parameters())
    d = sum(p.numel() for p in PatchDiscriminator(3, 64, 3).parameters())
    assert round(g / 1e6, 3) == 11.378
    assert round(d / 1e6, 3) == 2.765


def test_patchgan_receptive_field_is_70():
    rf, jump = 1, 1
    convs = [m for m in PatchDiscriminator(1, 8, 3).modules() if isinstance(m, nn.Conv2d)]
    for conv in convs:
        rf += (conv.kernel_size[0] - 1) * jump
        jump *= conv.stride[0]
    assert rf == 70
    assert PatchDiscriminator(1, 8, 3)(torch.randn(1, 1, 256, 256)).shape == (1, 1, 30, 30)


def test_generator_shapes_and_tanh_range():
    g = ResnetGenerator(1, 1, ngf=8, n_blocks=2)
    y = g(torch.randn(3, 1, 36, 28) * 10)
    assert y.shape == (3, 1, 36, 28)
    assert y.abs().max() <= 1


def test_init_is_normal_002_with_zero_bias():
    g = ResnetGenerator(1, 1, ngf=64, n_blocks=9)
    convs = [m for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    weights = torch.cat([c.weight.flatten() for c in convs])
    assert abs(weights.std().item() - 0.02) < 1e-3 and abs(weights.mean().item()) < 1e-3
    assert all(torch.count_nonzero(c.bias) == 0 for c in convs)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "small"])
def test_predictor_takes_one_channel_and_outputs_one_value(name):
    p = build_predictor(name).eval()
    assert p(torch.randn(2, 1, 64, 64)).shape == (2, 1)
    if name != "small":
        assert p.conv1.in_channels == 1 and p.fc.out_features == 1


@pytest.mark.parametrize("backend", ["reference", "cpp"])
@pytest.mark.parametrize("size", [64, 128])
def test_unet_generator_is_pix2pix_unet(backend, size):
    depth = unet_depth(size)
    ours, theirs = UnetGenerator(1, 1, ngf=4, depth=depth), pix2pix_unet(1, 1, depth, 4)
    _copy_params(ours, theirs)
    x = torch.randn(2, 1, size, size)
    with torch.no_grad(), ops.use_backend(backend):
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-4)


def test_unet_depth_halves_to_one_pixel_and_keeps_every_parameter_trained():
    assert [unet_depth(s) for s in (32, 64, 96, 128, 256, 512)] == [5, 6, 5, 7, 8, 8]
    g = UnetGenerator(1, 1, ngf=4, depth=unet_depth(96))
    y = g(torch.randn(2, 1, 96, 96) * 10)
    assert y.shape == (2, 1, 96, 96) and y.abs().max() <= 1
    y.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())
    with pytest.raises(ValueError, match="depth >= 2"):
        UnetGenerator(1, 1, 4, depth=1)


@pytest.mark.parametrize("n_layers,patch", [(1, 16), (2, 34), (3, 70)])
def test_patchgan_depth_sets_the_patch_each_output_sees(n_layers, patch):
    """Measured, not computed: the input pixels that move one central output of the critic. Its
    convolutions only: instance norm lets every output see each feature map's mean and spread over the
    whole image, but no layout beyond its patch."""
    torch.manual_seed(0)
    critic = PatchDiscriminator(1, 4, n_layers).double()
    critic.model = nn.Sequential(*[nn.LeakyReLU(0.2) if isinstance(m, InstanceNormAct) else m for m in critic.model])
    x = torch.randn(1, 1, 128, 128, dtype=torch.double, requires_grad=True)
    out = critic(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    rows, cols = torch.nonzero(x.grad[0, 0].abs() > 0, as_tuple=True)
    assert (int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1) == (patch, patch)


