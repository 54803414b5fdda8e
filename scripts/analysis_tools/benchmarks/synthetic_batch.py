"""One synthetic EVICAN-like batch (cells and nuclei of several cultures, boxes and polygon masks),
packed as mmdet's dataloader would give it: the same input for every model the speed benchmark times.

(``mmdet.testing.demo_mm_inputs`` draws random boxes on noise; the models here should see cell-like
objects at the densities of the data they are built for.)
"""
from typing import List

import cv2
import numpy as np

N_CULTURES = 4  # labels 0..7: valid for every compared model (the demo has 8 classes)


def synthetic_batch(size: int, n_images: int, seed: int = 0) -> List[dict]:
    """``n_images`` packed samples of ``size`` x ``size`` px (synthetic EVICAN images of different
    cultures, cells and nuclei with boxes and polygon masks), as the dataloader would give them."""
    from mmcv.transforms import Compose

    from scripts.dataset_converters.synthetic_evican import CULTURES, culture_morphology, render_image
    pipeline = Compose([dict(type='mmdet.LoadAnnotations', with_bbox=True, with_mask=True),
                        dict(type='mmdet.PackDetInputs')])
    samples = []
    for i in range(n_images):
        c = i % N_CULTURES
        rng = np.random.default_rng((seed, i))
        img, objects = render_image(rng, size, size, culture_morphology(c), level=1)
        instances = []
        for cell, nuc, _ in objects:
            for kind, poly in ((0, cell), (1, nuc)):
                if poly is None:
                    continue
                x0, y0 = poly.min(0)
                x1, y1 = poly.max(0)
                instances.append(dict(bbox=[float(x0), float(y0), float(x1), float(y1)],
                                      bbox_label=2 * c + kind, ignore_flag=0,
                                      mask=[[float(v) for v in poly.ravel()]]))
        results = dict(img=cv2.cvtColor(img, cv2.COLOR_GRAY2BGR), img_shape=(size, size),
                       ori_shape=(size, size), scale_factor=(1.0, 1.0), img_id=i,
                       img_path=f'{CULTURES[c]}_{i}.jpg', instances=instances)
        samples.append(pipeline(results))
    return samples


def collate(samples: List[dict]) -> dict:
    """Samples -> the ``data`` of ``model.train_step``/``test_step``."""
    return dict(inputs=[s['inputs'] for s in samples], data_samples=[s['data_samples'] for s in samples])
