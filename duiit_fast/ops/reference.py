"""The eager references of every op, gathered: the oracle tests and benchmarks compare the fused
implementations with. Each is defined beside its op (instance_norm.py, losses.py)."""
from .instance_norm import ACTIVATIONS, check_activation, instance_norm_act_ref as instance_norm_act
from .losses import l1_loss_ref as l1_loss, lsgan_loss_ref as lsgan_loss

__all__ = ["ACTIVATIONS", "check_activation", "instance_norm_act", "l1_loss", "lsgan_loss"]
