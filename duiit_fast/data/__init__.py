"""Data: phantoms (the embedded default), readers, labels, intensity mapping, slice sets."""
from .datasets import (FolderVolumes, SliceSet, build_slice_set, load_folder, read_folder, split_images,
                       split_patients)
from .labels import LabelRow, read_labels
from .readers import read_slices

__all__ = ["FolderVolumes", "SliceSet", "build_slice_set", "load_folder", "read_folder", "split_images",
           "split_patients", "LabelRow",
           "read_labels", "read_slices"]
