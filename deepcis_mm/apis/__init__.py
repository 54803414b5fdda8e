"""The user API, in the order a prediction runs: reading -> predictor (tiling, instances) -> exports."""
from .errors import InputError
from .exports import CSV_FIELDS, PredictionWriter, geojson, instance_rows, overlay
from .instances import Instances, label_image, mask_rle, resolve_overlaps, tight_crop
from .morphology import link_nuclei, measure, parent_label
from .outline import mask_geometry
from .output_folder import OutputFolder
from .predict_files import predict_files, predict_to_folder
from .predictor import Predictor
from .reading import image_size, list_inputs, read_image
from .tiling import image_tiles, tile_origins, tile_px

__all__ = ['Predictor', 'InputError', 'list_inputs', 'read_image', 'image_size', 'tile_origins', 'tile_px',
           'image_tiles', 'Instances', 'resolve_overlaps', 'tight_crop', 'label_image', 'mask_rle',
           'mask_geometry', 'measure', 'link_nuclei', 'parent_label', 'instance_rows', 'geojson', 'overlay',
           'OutputFolder', 'PredictionWriter', 'CSV_FIELDS', 'predict_files', 'predict_to_folder']
