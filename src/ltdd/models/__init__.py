"""Networks: the ConvNet family and the cross-architecture pool, plus the flat-parameter view.

Importing this package registers every model family in `MODELS`.
"""

from ltdd.models import alexnet, convnet, resnet, vgg  # noqa: F401  (registers the families)
from ltdd.models.functional import ParamLayout, count_parameters, functional_forward
from ltdd.models.registry import MODELS, allowed_overrides, create_model

__all__ = [
    "MODELS",
    "ParamLayout",
    "allowed_overrides",
    "count_parameters",
    "create_model",
    "functional_forward",
]
