"""EvicanDataset: mmdet's CocoDataset on normalized EVICAN files (see ``scripts/dataset_converters/prepare_evican.py``)."""
import json
from typing import List

from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS
from mmengine.fileio import get_local_path

from .categories import culture_palette
from .pipeline_rng import PipelineRNG

SUBSETS = {'cell': ('cell',), 'nucleus': ('nucleus',), 'all': ('cell', 'nucleus')}
# EVICAN's difficulty levels of the eval images (release file names, the paper's Table I rows)
LEVELS = {1: 'easy', 2: 'medium', 3: 'difficult'}


def with_intensity_rule(pipeline):
    """``pipeline`` with every ``LoadImageFromFile`` reading the file as stored and followed by
    ``NormalizeIntensity`` (unless one follows already), so that configs built on upstream pipelines
    (e.g. the RTMDet/CondInst baselines) read 16-bit files as training and predict do."""
    out = []
    steps = list(pipeline or [])
    for i, step in enumerate(steps):
        name = str(step.get('type', '')).split('.')[-1] if isinstance(step, dict) else ''
        if name == 'LoadImageFromFile':
            out.append(dict(step, color_type='unchanged'))
            nxt = steps[i + 1] if i + 1 < len(steps) else None
            if not (isinstance(nxt, dict) and str(nxt.get('type', '')).split('.')[-1] == 'NormalizeIntensity'):
                out.append(dict(type='NormalizeIntensity'))
        else:
            out.append(step)
    return out


@DATASETS.register_module()
class EvicanDataset(CocoDataset):
    """EVICAN cells and nuclei, one class per (culture, kind).

    Args:
        subset: ``'cell'`` (setting 1), ``'nucleus'`` (setting 2) or ``'all'`` (setting 3, cells and
            nuclei). The chosen categories of the annotation file become contiguous labels in file order.
        **kwargs: as :class:`mmdet.datasets.CocoDataset`. ``metainfo=dict(classes=...)`` restricts the
            classes further; an unknown class name is an error.

    Classes and palette are derived from the annotation file (``METAINFO`` is empty on purpose), so the
    same config serves EVICAN60, EVICAN2 and the synthetic data. The metainfo's ``cultures`` and ``kinds``
    (one per class) are the class table: the runner saves them in every checkpoint's ``dataset_meta``
    and the model reads them from there (:func:`~.categories.class_table`). Each data_info carries
    ``difficulty`` (1 easy, 2 medium, 3 difficult; 0 for train/val) and ``culture``.

    Partial annotation: EVICAN train/val images annotate only some cells; unannotated cells act as
    background for the RPN and RoI samplers, as in the paper. ``filter_cfg=dict(filter_empty_gt=True)``
    drops images without any annotation of the chosen subset.

    Image intensities: every ``LoadImageFromFile`` of the pipeline is followed by ``NormalizeIntensity``
    (:func:`with_intensity_rule`), whatever the config wrote.
    """

    METAINFO = dict(classes=(), palette=[])

    def __init__(self, *args, subset: str = 'all', **kwargs):
        if subset not in SUBSETS:
            raise ValueError(f'EvicanDataset: subset must be one of {sorted(SUBSETS)}, got {subset!r}')
        self.subset = subset
        self._pipeline_rng = PipelineRNG()
        kwargs['pipeline'] = with_intensity_rule(kwargs.get('pipeline'))
        super().__init__(*args, **kwargs)

    def __getitem__(self, idx: int) -> dict:
        if self.test_mode:
            return super().__getitem__(idx)
        # augmentation in the main process draws from its own generator: bit-exact resume
        with self._pipeline_rng.active():
            return super().__getitem__(idx)

    def _derive_metainfo(self) -> None:
        with get_local_path(self.ann_file, backend_args=self.backend_args) as path:
            with open(path) as f:
                categories = json.load(f)['categories']
        for c in categories:
            if 'kind' not in c:
                raise ValueError(f'{self.ann_file}: category {c.get("name")!r} has no "kind": '
                                 f'prepare the release with scripts/dataset_converters/prepare_evican.py first')
        chosen = [c for c in categories if c['kind'] in SUBSETS[self.subset]]
        wanted = self._metainfo.get('classes') or ()
        if wanted:
            names = [c['name'] for c in chosen]
            unknown = [w for w in wanted if w not in names]
            if unknown:
                raise ValueError(f'{self.ann_file}: unknown class(es) {unknown} for subset '
                                 f'{self.subset!r}; known: {names}')
            chosen = [c for c in chosen if c['name'] in wanted]  # file order = label order
        if not chosen:
            raise ValueError(f'{self.ann_file}: no category of kind {SUBSETS[self.subset]}')
        self._metainfo['classes'] = tuple(c['name'] for c in chosen)
        self._metainfo['palette'] = culture_palette(chosen)
        self._metainfo['cultures'] = tuple(c.get('culture') for c in chosen)
        self._metainfo['kinds'] = tuple(c['kind'] for c in chosen)

    def load_data_list(self) -> List[dict]:
        self._derive_metainfo()
        return super().load_data_list()

    def parse_data_info(self, raw_data_info: dict) -> dict:
        data_info = super().parse_data_info(raw_data_info)
        img = raw_data_info['raw_img_info']
        data_info['difficulty'] = int(img.get('difficulty', 0))
        data_info['culture'] = img.get('culture')
        return data_info
