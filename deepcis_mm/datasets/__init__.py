from .categories import class_name, culture_key, parse_categories, parse_category
from .evican import EvicanDataset
from .release import ReleaseError, convert_release
from .synthetic import CULTURES, make_synthetic_evican
from .transforms import NormalizeIntensity, normalize_intensity

__all__ = ['EvicanDataset', 'convert_release', 'ReleaseError', 'make_synthetic_evican', 'CULTURES',
           'parse_category', 'parse_categories', 'class_name', 'culture_key', 'NormalizeIntensity',
           'normalize_intensity']
