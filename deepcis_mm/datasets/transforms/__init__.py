from .normalize_intensity import NormalizeIntensity, normalize_intensity
from .unannotated_foreground import UnannotatedForegroundToIgnore, unannotated_foreground

__all__ = ['NormalizeIntensity', 'normalize_intensity', 'UnannotatedForegroundToIgnore', 'unannotated_foreground']
