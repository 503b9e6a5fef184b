"""Data on the host, ready for a jaxnn model: datasets, checks, batching and preprocessing.

Everything here works on NumPy arrays (float32 inputs, int32 labels) and returns NumPy arrays;
batches go to the device when a jitted step receives them. Randomness comes from explicit seeds.

- Datasets: :func:`digits`, :func:`mnist1d`, :func:`moons`, :func:`spirals`, :func:`idx_dataset`
  (MNIST-format files), :func:`load` by name, each returning a :class:`Dataset`;
  :func:`load_idx` reads one IDX file.
- Checks: :func:`check_dataset`, run once on data at entry.
- Batching: :func:`batches`, :func:`num_batches`, :func:`train_val_split`, :func:`kfold`.
- Preprocessing: :func:`standardize` (with its :class:`Standardizer`), :func:`one_hot`.

``digits`` and ``moons`` need scikit-learn and ``mnist1d`` needs the mnist1d package:
``pip install "jaxnn[data]"``.
"""

from jaxnn.data.batching import batches, kfold, num_batches, train_val_split
from jaxnn.data.checks import check_dataset
from jaxnn.data.datasets import DATASETS, Dataset, digits, idx_dataset, load, mnist1d, moons, spirals
from jaxnn.data.idx import load_idx
from jaxnn.data.preprocessing import Standardizer, one_hot, standardize

__all__ = [
    "DATASETS",
    "Dataset",
    "Standardizer",
    "batches",
    "check_dataset",
    "digits",
    "idx_dataset",
    "kfold",
    "load",
    "load_idx",
    "mnist1d",
    "moons",
    "num_batches",
    "one_hot",
    "spirals",
    "standardize",
    "train_val_split",
]
