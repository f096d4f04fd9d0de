"""ltdd: long-tailed dataset distillation.

The public Python API is exactly the names in `__all__` (documented in the README, section
"Python API"); every other module is internal and may change. The functions are not called
`evaluate` and `export`: those names are sub-modules of this package.
"""

__version__ = "0.1.0"

from ltdd.api import (
    DistilledDataset,
    RunResult,
    evaluate_distilled,
    export_distilled,
    load_distilled,
    longtail_split,
    run,
)
from ltdd.data.dataset import LongTailedData
from ltdd.data.source import ImageSource
from ltdd.data.sources import DATASETS, DatasetFormat
from ltdd.data.sources.registry import register as register_dataset
from ltdd.distill.methods import METHODS, Method, Phase
from ltdd.errors import UserError
from ltdd.models import MODELS, create_model

__all__ = [
    # distilled sets
    "load_distilled",
    "DistilledDataset",
    "export_distilled",
    # data
    "longtail_split",
    "LongTailedData",
    # the pipeline and the evaluation protocol
    "run",
    "RunResult",
    "evaluate_distilled",
    # registries: add a dataset source, a model or a method without editing ltdd
    "DATASETS",
    "DatasetFormat",
    "ImageSource",
    "register_dataset",
    "MODELS",
    "create_model",
    "METHODS",
    "Method",
    "Phase",
    # errors a user can fix
    "UserError",
    "__version__",
]
