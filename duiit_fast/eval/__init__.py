"""Evaluation: metrics, significance, figures."""
from .metrics import gap_closed, paired_bootstrap_mse_difference

__all__ = ["gap_closed", "paired_bootstrap_mse_difference"]
