from .categories import class_name, class_table, culture_key, culture_palette, parse_categories, parse_category
from .evican import LEVELS, EvicanDataset
from .transforms import NormalizeIntensity, normalize_intensity

__all__ = ['EvicanDataset', 'LEVELS', 'class_table', 'parse_category', 'parse_categories', 'class_name',
           'culture_key', 'culture_palette', 'NormalizeIntensity', 'normalize_intensity']
