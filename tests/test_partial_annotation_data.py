"""Synthetic generator for the partial-annotation study: the annotated fraction of train/val (known
counts, eval untouched) and the release's background-blurred copies (blurred only off annotated cells)."""
import hashlib
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from scripts.dataset_converters.evican_release import convert_release
from scripts.dataset_converters.synthetic_evican import (blur_unannotated, culture_morphology, make_synthetic_evican,
                                                         render_image)

KW = dict(cultures=('HeLa', 'C2C12'), n_train=4, n_val=2, n_eval_per_level=1, size=128, seed=5)


def _digest(folder):
    h = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        h.update(name.encode())
        with open(osp.join(folder, name), 'rb') as f:
            h.update(f.read())
    return h.hexdigest()


def _load(root, split):
    with open(osp.join(root, f'instances_{split}2019_EVICAN60.json')) as f:
        return json.load(f)


def _known_objects(split_code, i, culture_index, frac):
    """The generator's objects of train/val image i, rendered again: (n objects, n annotated)."""
    rng = np.random.default_rng((KW['seed'], split_code, i))
    _, objects = render_image(rng, KW['size'], KW['size'], culture_morphology(culture_index), 0, frac)
    return len(objects), sum(a for _, _, a in objects)


@pytest.fixture(scope='module')
def fractions(tmp_path_factory):
    root = tmp_path_factory.mktemp('fractions')
    for frac in (0.0, 0.5, 1.0):
        make_synthetic_evican(str(root / f'f{frac}'), annotate_frac=frac, **KW)
    make_synthetic_evican(str(root / 'blur'), annotate_frac=0.5, blurred_background=True, **KW)
    return root


def test_annotated_fraction_of_train_val_with_known_counts(fractions):
    cultures = {'HeLa': 0, 'C2C12': 3}  # their index in CULTURES (the morphology design)
    for split, code in (('train', 1), ('val', 2)):
        per_frac = {f: _load(str(fractions / f'f{f}'), split) for f in (0.0, 0.5, 1.0)}
        assert per_frac[0.0]['annotations'] == []
        for frac in (0.5, 1.0):
            data = per_frac[frac]
            cells = [a for a in data['annotations'] if a['category_id'] % 2 == 1]
            expected = 0
            for im in data['images']:
                i = int(im['file_name'].split('_')[-1][:4])
                n, n_annotated = _known_objects(code, i, cultures[im['file_name'].split('_')[0]], frac)
                expected += n_annotated
                if frac == 1.0:
                    assert n_annotated == n
            assert len(cells) == expected > 0
        # same images whatever the fraction; the annotated cells of 0.5 are a subset of all cells
        assert len({_digest(str(fractions / f'f{f}' / 'Images' / f'EVICAN_{split}2019')) for f in (0.0, 0.5, 1.0)}) == 1
        full = {json.dumps(a['segmentation']) for a in per_frac[1.0]['annotations']}
        half = [json.dumps(a['segmentation']) for a in per_frac[0.5]['annotations']]
        assert set(half) <= full and 0 < len(half) < len(full)
    # eval stays fully annotated: identical files for every fraction
    for level in ('easy', 'medium', 'difficult'):
        name = f'instances_eval2019_{level}_EVICAN60.json'
        texts = {open(fractions / f'f{f}' / name).read() for f in (0.0, 0.5, 1.0)}
        assert len(texts) == 1


def test_annotate_frac_out_of_range_is_an_error(tmp_path):
    with pytest.raises(ValueError, match='annotate_frac'):
        make_synthetic_evican(str(tmp_path), annotate_frac=1.5, **KW)


def test_blur_unannotated_keeps_annotated_pixels_exactly():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 80), dtype=np.uint8)
    square = np.array([[10, 10], [30, 10], [30, 30], [10, 30]], float)
    out = blur_unannotated(img, [square], sigma=3.0)
    inside = np.zeros_like(img, bool)
    inside[10:31, 10:31] = True
    np.testing.assert_array_equal(out[inside], img[inside])
    far = np.ones_like(img, bool)
    far[6:35, 6:35] = False
    assert np.abs(out[far].astype(int) - img[far]).mean() > 30  # white noise blurred to its mean
    assert out.std() < img.std()


def test_blurred_variant_in_release_layout(fractions, tmp_path):
    blur, plain = fractions / 'blur', fractions / 'f0.5'
    # everything but the blurred folders is what the same call without the option writes
    for sub in ('Images/EVICAN_train2019', 'Images/EVICAN_val2019', 'Images/EVICAN_eval2019'):
        assert _digest(str(blur / sub)) == _digest(str(plain / sub))
    assert not osp.exists(plain / 'Images/EVICAN_train2019_BGblurred')
    full = _load(str(fractions / 'f1.0'), 'train')
    for split in ('train', 'val'):
        data = _load(str(blur), split)
        folder = blur / 'Images' / f'EVICAN_{split}2019_BGblurred'
        # one blurred copy per annotated image, same file name (no empty background frames)
        assert sorted(os.listdir(folder)) == sorted(im['file_name'] for im in data['images'])
    data = _load(str(blur), 'train')
    inside_diff, unannotated_diff, background_diff = [], [], []
    for im in data['images']:
        h, w = im['height'], im['width']
        orig = cv2.imread(str(blur / 'Images/EVICAN_train2019' / im['file_name']), 0).astype(int)
        blurred = cv2.imread(str(blur / 'Images/EVICAN_train2019_BGblurred' / im['file_name']), 0).astype(int)
        def union(anns):
            m = np.zeros((h, w), bool)
            for a in anns:
                m |= mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(a['segmentation'], h, w))) > 0
            return m
        annotated = union(a for a in data['annotations'] if a['image_id'] == im['id'])
        full_id = next(f['id'] for f in full['images'] if f['file_name'] == im['file_name'])
        all_cells = union(a for a in full['annotations'] if a['image_id'] == full_id)
        diff = np.abs(orig - blurred)
        inside_diff.append(diff[annotated])
        unannotated_diff.append(diff[all_cells & ~cv2.dilate(annotated.astype(np.uint8), np.ones((5, 5))).astype(bool)])
        background_diff.append(diff[~cv2.dilate(all_cells.astype(np.uint8), np.ones((7, 7))).astype(bool)])
    inside, unann, bg = (np.concatenate(d) for d in (inside_diff, unannotated_diff, background_diff))
    # annotated cells keep their pixels (up to the two files' JPEG coding); everything else is blurred
    assert inside.mean() < 1.5 and np.percentile(inside, 99) <= 8
    assert unann.size > 100 and unann.mean() > 4 * inside.mean() and bg.mean() > 4 * inside.mean()
    # the converter takes the blurred copies as the train images (the release's --train-images)
    dst = tmp_path / 'prepared'
    convert_release(str(blur), str(dst), verbose=False,
                    image_dirs=dict(train=str(blur / 'Images/EVICAN_train2019_BGblurred')))
    assert os.readlink(dst / 'images/train') == str(blur / 'Images/EVICAN_train2019_BGblurred')
    with open(dst / 'annotations/instances_train.json') as f:
        assert len(json.load(f)['annotations']) == len(data['annotations'])
