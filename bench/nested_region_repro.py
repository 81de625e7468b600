"""A network whose residual blocks are nested compile regions computes wrong values under
Inductor when it is called twice (torch 2.14.1, CPU, 2026-11-27): the aot_eager backend (the
same traced graph, no Inductor) matches eager exactly. Standalone (torch only), for a bug report
and for rechecking a newer torch before bench/compile_regions.py's "blocks" mode is worth shipping.

    python bench/nested_region_repro.py [cpu|cuda]   # the relative error of each case; > 1e-5 is wrong

Each Inductor case also runs with one of two Inductor settings off: buffer reuse
(`allow_buffer_reuse`) or the NHWC layout choice for convolutions (`layout_optimization`).
Switching either one off made every case right on the CPU (torch 2.14.1), so the wrong values
need both. What the generated code shows (TORCH_LOGS=output_code): the region's compiled forward
returns, for the backward, its input and its conv weights as they are (aliases of the caller's
buffers, among them parameters), and the calling graph does not know they alias. After a region
call it frees the aliased buffer and reuses that memory for a channels-last copy of a later
region's saved weights: it writes into a parameter of the network. The next call of that block
(the second network call) computes with a corrupted weight, and the parameter stays changed after
the call ("parameters overwritten" below). A compiled CPU run of this project switches buffer reuse
off (train/fast.py, REGION_COMPILE_OPTIONS).
"""
import sys

import torch
import torch._inductor.config as inductor_config
from torch import nn
from torch.nn import functional as F


class Block(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, padding=1)
        self.conv2 = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x):
        return x + F.instance_norm(self.conv2(torch.relu(F.instance_norm(self.conv1(x)))))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp, self.out = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 1, 3, padding=1)
        self.blocks = nn.ModuleList([Block(8), Block(8)])
        self.regions = False

    def forward(self, x):
        h = self.inp(x)
        for block in self.blocks:
            h = block_region(block, h) if self.regions else block(h)
        return torch.tanh(self.out(h))


block_region = torch.compiler.nested_compile_region(lambda block, h: block(h))


def main(device: str = "cpu") -> None:
    torch.manual_seed(0)
    net, x = Net().to(device), torch.randn(2, 1, 16, 16, device=device)
    cases = {"net(x)": lambda: net(x), "net(net(x))": lambda: net(net(x)),
             "net(x) + net(2x)": lambda: net(x) + net(2 * x)}
    print(f"torch {torch.__version__}, {device}")
    settings = [("aot_eager", None), ("inductor", None), ("inductor", "allow_buffer_reuse"),
                ("inductor", "layout_optimization")]
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    for backend, switched_off in settings:
        patch = {switched_off: False} if switched_off else {}
        for name, fn in cases.items():
            net.load_state_dict(weights)
            net.regions = False
            want = fn().square().mean().item()
            net.regions = True
            torch._dynamo.reset()
            with inductor_config.patch(patch):
                got = torch.compile(lambda: fn().square().mean(), backend=backend, fullgraph=True)().item()
            changed = [k for k, v in net.state_dict().items() if not torch.equal(v, weights[k])]
            label = backend + (f" without {switched_off}" if switched_off else "")
            print(f"{label:40s} {name:18s} relative error {abs(got - want) / abs(want):.1e}"
                  + (f", parameters overwritten: {', '.join(changed)}" if changed else ""))


if __name__ == "__main__":
    main(*sys.argv[1:2])
