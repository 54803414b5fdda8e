"""scripts/analysis_tools/culture_separability.py: image-level culture from annotated morphology, on
hand-made COCO files whose answer is known."""
import json
import os
import os.path as osp

import numpy as np
import pytest

from scripts.analysis_tools.culture_separability import (image_descriptor, main, morphology_accuracy,
                                                          nearest_centroid)

# culture -> (cell radius, elongation, nucleus radius): Big round cells vs small elongated ones
SHAPES = {'Big': (20.0, 1.0, 8.0), 'Small': (8.0, 2.5, 3.0)}


def _ellipse(cx, cy, r, elong, n=40):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    a, b = r * np.sqrt(elong), r / np.sqrt(elong)
    return np.stack([cx + a * np.cos(t), cy + b * np.sin(t)], 1).ravel().round(2).tolist()


def _coco(images, swap=False):
    """images: list of (culture, level); each image holds 4 cells with nuclei of its culture."""
    cats = [dict(id=1, name='Big cell'), dict(id=2, name='Big nucleus'),
            dict(id=3, name='Small cell'), dict(id=4, name='Small nucleus')]
    ids = {'Big': (1, 2), 'Small': (3, 4)}
    imgs, anns = [], []
    for i, (culture, level) in enumerate(images, 1):
        imgs.append(dict(id=i, file_name=f'{i}.jpg', width=200, height=200, difficulty=level))
        r, e, nr = SHAPES[culture]
        label = ('Small' if culture == 'Big' else 'Big') if swap else culture
        for j, (cx, cy) in enumerate(((50, 50), (150, 50), (50, 150), (150, 150))):
            jitter = 1.0 + 0.05 * ((i + j) % 3 - 1)
            for cat, rad, el in ((ids[label][0], r * jitter, e), (ids[label][1], nr * jitter, 1.2)):
                anns.append(dict(id=len(anns) + 1, image_id=i, category_id=cat, iscrowd=0,
                                 segmentation=[_ellipse(cx, cy, rad, el)]))
    return dict(images=imgs, annotations=anns, categories=cats)


def _prepared(root, eval_swap=False):
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    train = [('Big', 0), ('Small', 0)] * 3
    evals = [('Big', 1), ('Small', 1), ('Big', 2), ('Small', 3)]
    for name, images, swap in (('train', train, False), ('eval', evals, eval_swap)):
        with open(osp.join(root, 'annotations', f'instances_{name}.json'), 'w') as f:
            json.dump(_coco(images, swap), f)
    return str(root)


def test_descriptor_reads_size_and_elongation():
    yy, xx = np.mgrid[0:100, 0:100]
    round_cell = (xx - 50) ** 2 + (yy - 50) ** 2 < 20 ** 2
    long_cell = ((xx - 50) / 30.0) ** 2 + ((yy - 50) / 10.0) ** 2 < 1
    nucleus = (xx - 50) ** 2 + (yy - 50) ** 2 < 5 ** 2
    d_round = image_descriptor([round_cell, nucleus], ['cell', 'nucleus'])
    d_long = image_descriptor([long_cell], ['cell'])
    assert np.exp(d_round[0]) == pytest.approx(40, rel=0.03)  # equivalent diameter of a radius-20 disc
    assert d_round[1] == pytest.approx(0.0, abs=0.05)  # round: axis ratio 1
    assert np.exp(d_long[1]) == pytest.approx(3.0, rel=0.05)  # 30 / 10
    assert np.exp(d_round[4]) == pytest.approx(10 / 40, rel=0.1)  # nucleus / cell diameter
    assert np.isnan(d_long[2:]).all()  # no nucleus: NaN, left out by the classifier


def test_nearest_centroid_ignores_missing_features():
    train = np.array([[0.0, 0.0], [0.2, 0.0], [5.0, 5.0], [5.2, 5.0]])
    test = np.array([[np.nan, 4.9], [0.1, np.nan]])
    assert nearest_centroid(train, ['a', 'a', 'b', 'b'], test) == ['b', 'a']


def test_morphology_accuracy_known_answers(tmp_path):
    good = morphology_accuracy(_prepared(tmp_path / 'good'))
    assert good['train'] == dict(image_acc=100.0, n_images=6, levels={'L0': 100.0})
    assert good['eval']['image_acc'] == 100.0
    assert good['eval']['levels'] == {'L1': 100.0, 'L2': 100.0, 'L3': 100.0}
    swapped = morphology_accuracy(_prepared(tmp_path / 'swapped', eval_swap=True))  # eval labels lie
    assert swapped['eval']['image_acc'] == 0.0


def test_cli_writes_table_and_json(tmp_path, capsys):
    root = _prepared(tmp_path / 'p')
    main([root, '--out', str(tmp_path / 'out')])
    table = (tmp_path / 'out' / 'culture_separability.md').read_text()
    assert '| morphology (annotations), nearest centroid | 100.0 | 100.0 |' in table
    data = json.loads((tmp_path / 'out' / 'culture_separability.json').read_text())
    assert data['model'] is None and data['morphology']['eval']['n_images'] == 4
    with pytest.raises(SystemExit):
        main([str(tmp_path / 'missing')])
    assert 'instances_train.json: not found' in capsys.readouterr().err
