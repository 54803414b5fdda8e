"""scripts/analysis_tools/culture_separability.py: image-level culture from annotated morphology, on
hand-made COCO files whose answer is known."""
import json
import os
import os.path as osp

import numpy as np
import pytest

from scripts.analysis_tools.culture_separability import (detections_descriptor, image_descriptor, main,
                                                          morphology_accuracy, nearest_centroid)

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


def test_model_evidence_of_a_model_that_always_says_one_culture(prepared, tmp_path):
    """A detector whose classifier always answers 'MCF-7 cell' is right on exactly the MCF-7 instances
    and images: the accuracies are their shares in the annotations."""
    import torch
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from pycocotools.coco import COCO

    from scripts.analysis_tools.culture_separability import model_accuracy
    config = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                      'configs/demo/deepcis_s14-dcnv2_fpn_demo_synthetic-evican.py')
    cfg = Config.fromfile(config)
    cfg.model.roi_head.num_classes = 6
    cfg_path = str(tmp_path / 'cfg.py')
    cfg.dump(cfg_path)
    model = MODELS.build(cfg.model)
    meta = json.load(open(osp.join(prepared, 'annotations', 'instances_train.json')))['categories']
    classes = [c['name'] for c in meta]
    target = classes.index('MCF-7 cell')
    with torch.no_grad():
        for head in model.roi_head.bbox_head:
            head.fc_cls.weight.zero_()
            head.fc_cls.bias.fill_(-10.0)
            head.fc_cls.bias[target] = 10.0
    torch.save(dict(state_dict=model.state_dict(), meta=dict(dataset_meta=dict(classes=tuple(classes)))),
               tmp_path / 'ckpt.pth')
    out = model_accuracy(cfg_path, str(tmp_path / 'ckpt.pth'), prepared)
    for split in ('train', 'eval'):
        coco = COCO(osp.join(prepared, 'annotations', f'instances_{split}.json'))
        culture = {c['id']: c['name'].split()[0] for c in coco.dataset['categories']}
        per_image = [[culture[a['category_id']] for a in coco.imgToAnns[i]] for i in coco.getImgIds()]
        per_image = [c for c in per_image if c]
        instances = [c for cs in per_image for c in cs]
        assert out[split]['n_images'] == len(per_image)
        assert out[split]['instance_acc'] == round(100.0 * instances.count('MCF-7') / len(instances), 1)
        assert out[split]['image_acc'] == round(100.0 * sum(cs[0] == 'MCF-7' for cs in per_image) / len(per_image), 1)
        assert out[split]['branch_image_acc'] is None
        det = out['detections'][split]
        assert det['n_images'] == len(per_image) and 0.0 <= det['image_acc'] <= 100.0


def test_detections_descriptor_keeps_confident_detections_and_their_kinds():
    """Two confident detections (a cell of radius 20, a nucleus of radius 8) and a low-scoring cell
    of radius 5: the descriptor is the annotations' descriptor of the first two."""
    import torch
    from mmengine.structures import InstanceData
    yy, xx = np.mgrid[:100, :100]
    disc = [(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r for cx, cy, r in ((50, 50, 20), (50, 50, 8), (10, 10, 5))]
    pred = InstanceData(masks=torch.from_numpy(np.stack(disc)), labels=torch.tensor([0, 1, 0]),
                        scores=torch.tensor([0.9, 0.8, 0.2]))
    d = detections_descriptor(pred, ['cell', 'nucleus'], 0.3)
    assert np.allclose(d, image_descriptor(disc[:2], ['cell', 'nucleus']))
    assert np.exp(d[0]) == pytest.approx(40, rel=0.03) and np.exp(d[2]) == pytest.approx(16, rel=0.06)
    assert np.isnan(detections_descriptor(pred, ['cell', 'nucleus'], 0.95)).all()
