"""Models: CycleGAN's ResNet generator and 70×70 PatchGAN, and the age predictor."""
from .discriminator import PatchDiscriminator
from .generator import ResnetBlock, ResnetGenerator
from .layers import InstanceNormAct, init_weights_normal
from .predictor import PREDICTORS, SmallRegressor, build_predictor

__all__ = ["PatchDiscriminator", "ResnetBlock", "ResnetGenerator", "InstanceNormAct",
           "init_weights_normal", "PREDICTORS", "SmallRegressor", "build_predictor"]
