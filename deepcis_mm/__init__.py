"""DeepCIS on MMDetection 3.x: importing this package registers its modules in mmdet's registries.

Configs pull it in with ``custom_imports = dict(imports=['deepcis_mm'], allow_failed_imports=False)``.
"""
from . import compat  # noqa: F401  (patches first: they matter for everything below)
from . import datasets, engine, evaluation, models  # noqa: F401

__version__ = '0.1.0'
