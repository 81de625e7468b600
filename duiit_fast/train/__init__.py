"""Training: the joint DUIIT step, predictor-only baselines, image pool, schedule, Trainer."""
from .pool import ImagePool
from .schedule import linear_decay, linear_decay_factor
from .trainer import Trainer

__all__ = ["ImagePool", "linear_decay", "linear_decay_factor", "Trainer"]
