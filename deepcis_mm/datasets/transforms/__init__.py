from .normalize_intensity import NormalizeIntensity, normalize_intensity

__all__ = ['NormalizeIntensity', 'normalize_intensity']
