"""Reading the user's images: any of JPEG/PNG/TIFF, 8/16 bit, gray/RGB, exactly as training reads them.

The first step of a prediction (:mod:`.predict_files`): list the inputs, read each one (or name why it
cannot be read), hand uint8 BGR arrays to the :class:`~.predictor.Predictor`.
"""
import glob
import os
import os.path as osp
from typing import List, Optional, Tuple

import cv2
import numpy as np

from ..datasets.transforms import normalize_intensity
from .errors import InputError

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.tif', '.tiff', '.bmp')


def list_inputs(spec: str) -> List[str]:
    """One image, every image of a folder, or a glob pattern -> sorted paths."""
    if osp.isfile(spec):
        return [spec]
    if osp.isdir(spec):
        paths = [osp.join(spec, n) for n in sorted(os.listdir(spec)) if n.lower().endswith(IMAGE_EXTS)]
    else:
        paths = sorted(p for p in glob.glob(spec) if p.lower().endswith(IMAGE_EXTS))
    if not paths:
        raise InputError(f'{spec}: no images ({", ".join(IMAGE_EXTS)}) found')
    return paths


def image_size(path: str) -> Optional[Tuple[int, int]]:
    """(height, width) from the file header without decoding the pixels; None if not readable so."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except Exception:
        return None


def check_complete(path: str) -> None:
    """Raise :class:`InputError` if an image file ends before its data does (decoders fill the rest
    with grey and carry on): JPEG without its end marker after the last scan, PNG without IEND,
    TIFF whose strips/tiles cannot all be read."""
    ext = osp.splitext(path)[1].lower()
    if ext in ('.jpg', '.jpeg'):
        with open(path, 'rb') as f:
            data = f.read()
        # entropy-coded data cannot hold FF D9 (FF is stuffed as FF 00): an EOI after the last SOS
        if data.rfind(b'\xff\xd9') < max(data.rfind(b'\xff\xda'), 0):
            raise InputError(f'{path}: truncated or corrupt image (JPEG ends without its end marker)')
    elif ext == '.png':
        with open(path, 'rb') as f:
            f.seek(max(osp.getsize(path) - 4096, 0))  # IEND is last; some writers pad after it
            tail = f.read()
        if b'IEND' not in tail:
            raise InputError(f'{path}: truncated or corrupt image (PNG ends without its IEND chunk)')
    elif ext in ('.tif', '.tiff'):
        from PIL import Image, UnidentifiedImageError
        try:
            with Image.open(path) as im:
                im.load()
        except (UnidentifiedImageError, NotImplementedError, ValueError):
            pass  # a TIFF flavour Pillow does not decode: OpenCV's reading alone decides
        except (OSError, SyntaxError) as e:
            raise InputError(f'{path}: truncated or corrupt image ({str(e).splitlines()[0][:120]})') from None


def read_image(path: str) -> np.ndarray:
    """Any gray/RGB(A), 8/16-bit or float image -> uint8 BGR exactly as the training pipeline sees it
    (:func:`~deepcis_mm.datasets.normalize_intensity`: 8-bit unchanged, 16-bit its 8-bit rendering).

    Unreadable, truncated or corrupt files raise :class:`InputError` naming the file.
    """
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise InputError(f'{path}: unreadable image')
    check_complete(path)
    try:
        return normalize_intensity(img, path)
    except ValueError as e:
        raise InputError(str(e)) from None
