from .inference import InputError, Predictor, list_inputs, read_image, tile_origins
from .morphology import link_nuclei, mask_polygon, measure

__all__ = ['Predictor', 'InputError', 'list_inputs', 'read_image', 'tile_origins', 'measure', 'link_nuclei',
           'mask_polygon']
