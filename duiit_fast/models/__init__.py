"""Models: CycleGAN's ResNet and U-Net generators and 70×70 PatchGAN, and the age predictor."""
from .discriminator import PatchDiscriminator
from .generator import GENERATORS, ResnetBlock, ResnetGenerator, UnetGenerator, build_generator, unet_depth
from .layers import InstanceNormAct, init_weights_normal
from .predictor import PREDICTORS, SmallRegressor, build_predictor

__all__ = ["PatchDiscriminator", "ResnetBlock", "ResnetGenerator", "UnetGenerator", "GENERATORS",
           "build_generator", "unet_depth", "InstanceNormAct",
           "init_weights_normal", "PREDICTORS", "SmallRegressor", "build_predictor"]
