"""duiit_fast: DUIIT cross-modal augmentation (MRI/PET → CT) trained jointly with the predictor."""
from .errors import DuiitConfigError, DuiitDataError, DuiitError

__version__ = "0.1.0"

__all__ = ["Trainer", "TrainConfig", "PhantomConfig", "FastConfig", "AugmentConfig", "DuiitError", "DuiitDataError",
           "DuiitConfigError", "__version__"]


def __getattr__(name):
    # Trainer and TrainConfig import torch and the models: load them on first use so that
    # `duiit --help` and the error types stay cheap to import.
    if name == "Trainer":
        from .train.trainer import Trainer
        return Trainer
    if name in ("TrainConfig", "PhantomConfig", "FastConfig", "AugmentConfig"):
        from . import config
        return getattr(config, name)
    raise AttributeError(f"module 'duiit_fast' has no attribute {name!r}")
