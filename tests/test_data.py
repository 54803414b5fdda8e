"""EVICAN data layer: converter on a hand-made release, bad inputs, generator, EvicanDataset."""
import hashlib
import json
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest

from deepcis_mm.datasets import EvicanDataset, parse_category
from scripts.dataset_converters.evican_release import ReleaseError, convert_release
from scripts.dataset_converters.synthetic_evican import make_synthetic_evican

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.mark.parametrize('name,sup,expected', [
    ('HeLa cell', None, ('HeLa', 'cell')),
    ('HeLa_Nucleus', None, ('HeLa', 'nucleus')),
    ('nucleus HeLa', None, ('HeLa', 'nucleus')),
    ('MCF-7 (nuclei)', None, ('MCF-7', 'nucleus')),
    ('SW-480-cells', '', ('SW-480', 'cell')),
    ('RAW-264.7_Cell', 'Cell', ('RAW-264.7', 'cell')),
    ('Cell', 'HeLa', ('HeLa', 'cell')),
    ('Nucleus', 'none', (None, 'nucleus')),  # EVICAN2
    ('HeLa', 'Nucleus', ('HeLa', 'nucleus')),
    ('Blob', 'thing', None),
    ('cellular debris', None, None),
])
def test_parse_category(name, sup, expected):
    assert parse_category(name, sup) == expected


def _jpg(path, w, h, value=128):
    os.makedirs(osp.dirname(path), exist_ok=True)
    cv2.imwrite(path, np.full((h, w), value, np.uint8))


CATS = [dict(id=1, name='HeLa cell', supercategory='cell'), dict(id=2, name='nucleus HeLa'),
        dict(id=3, name='Cell', supercategory='MCF-7'), dict(id=4, name='MCF-7_Nucleus')]


def _write(path, images, annotations, categories=CATS):
    with open(path, 'w') as f:
        json.dump(dict(images=images, annotations=annotations, categories=categories), f)


@pytest.fixture
def release(tmp_path):
    """A hand-made release: 1 train image (+ a background frame), 2 eval images on 2 levels."""
    src = tmp_path / 'EVICAN'
    _jpg(str(src / 'Images/EVICAN_train2019/a.jpg'), 20, 10)
    _jpg(str(src / 'Images/EVICAN_train2019/HeLa_Background.jpg'), 20, 10)
    _jpg(str(src / 'Images/EVICAN_eval2019/1_HeLa.jpg'), 16, 16)
    _jpg(str(src / 'Images/EVICAN_eval2019/2_MCF-7.jpg'), 12, 14)
    _write(src / 'instances_train2019_EVICAN60.json',
           [dict(id=7, file_name='a.jpg', width=20, height=10),
            dict(id=8, file_name='HeLa_Background.jpg', width=20, height=10)],
           [dict(id=1, image_id=7, category_id=1, iscrowd=0,
                 segmentation=[[2, 2, 8, 2, 8, 6, 2, 6], [1, 1, 2, 2]]),  # 2nd part degenerate
            dict(id=2, image_id=7, category_id=2, segmentation=[[3, 3, 5, 3, 5, 5, 3, 5]],
                 bbox=[3, 3, 2, 2], area=4.0),
            dict(id=3, image_id=8, category_id=1, segmentation=[[0, 0, 4, 0, 4, 4]])])
    _write(src / 'instances_eval2019_easy_EVICAN60.json',
           [dict(id=1, file_name='1_HeLa.jpg', width=16, height=16)],
           [dict(id=1, image_id=1, category_id=1, segmentation=[[0, 0, 10, 0, 10, 10, 0, 10]])])
    _write(src / 'instances_eval2019_medium_EVICAN60.json',
           [dict(id=1, file_name='2_MCF-7.jpg', width=12, height=14)],  # same image id as easy
           [dict(id=1, image_id=1, category_id=3, segmentation=[[1, 1, 5, 1, 5, 9, 1, 9]]),
            dict(id=2, image_id=1, category_id=4, segmentation=[[2, 2, 4, 2, 4, 4, 2, 4]])])
    _write(src / 'instances_eval2019_difficult_EVICAN60.json', [], [])
    return src


def _load(dst, split):
    with open(osp.join(dst, 'annotations', f'instances_{split}.json')) as f:
        return json.load(f)


def test_converter_on_hand_made_release(release, tmp_path):
    dst = str(tmp_path / 'out')
    summary = convert_release(str(release), dst, verbose=False)
    train = _load(dst, 'train')
    assert [c['name'] for c in train['categories']] == ['HeLa cell', 'HeLa nucleus', 'MCF-7 cell',
                                                        'MCF-7 nucleus']
    assert [(c['culture'], c['kind']) for c in train['categories']] == [
        ('HeLa', 'cell'), ('HeLa', 'nucleus'), ('MCF-7', 'cell'), ('MCF-7', 'nucleus')]
    # background frame skipped with its annotation; ids of train kept
    assert [(im['id'], im['file_name'], im['difficulty']) for im in train['images']] == [(7, 'a.jpg', 0)]
    a1, a2 = train['annotations']
    assert a1['segmentation'] == [[2, 2, 8, 2, 8, 6, 2, 6]]  # degenerate part dropped
    assert a1['bbox'] == [2, 2, 6, 4] and a1['area'] == 24.0  # computed from the polygon
    assert a2['bbox'] == [3, 3, 2, 2] and a2['area'] == 4.0  # given values kept
    assert any('dropped degenerate polygon' in w for w in summary['warnings'])
    assert any('background image HeLa_Background.jpg' in w for w in summary['warnings'])

    ev = _load(dst, 'eval')
    assert [(im['id'], im['file_name'], im['difficulty'], im['culture']) for im in ev['images']] == [
        (1, '1_HeLa.jpg', 1, 'HeLa'), (2, '2_MCF-7.jpg', 2, 'MCF-7')]
    assert [(a['id'], a['image_id'], a['category_id'], a['bbox'], a['area']) for a in ev['annotations']] == [
        (1, 1, 1, [0, 0, 10, 10], 100.0), (2, 2, 3, [1, 1, 4, 8], 32.0), (3, 2, 4, [2, 2, 2, 2], 4.0)]
    assert osp.realpath(osp.join(dst, 'images', 'eval')) == osp.realpath(release / 'Images/EVICAN_eval2019')
    lv = summary['splits']['eval']['levels']
    assert (lv['easy']['images'], lv['medium']['instances'], lv['difficult']['images']) == (1, 2, 0)
    assert lv['medium']['per_class']['MCF-7 nucleus'] == dict(images=1, instances=1)
    assert summary['splits']['eval']['max_instances_per_image'] == 2  # image 2 holds annotations 2 and 3
    assert summary['splits']['train']['max_instances_per_image'] == 2
    assert 'Instances per image: mean 1.5, max 2' in (tmp_path / 'out' / 'summary.md').read_text()


def _expect_error(release, tmp_path, match):
    dst = tmp_path / 'out'
    with pytest.raises(ReleaseError, match=match) as info:
        convert_release(str(release), str(dst), verbose=False)
    assert '\n' not in str(info.value)
    assert not (dst / 'annotations' / 'instances_train.json').exists()  # nothing half-written
    return str(info.value)


def _edit(path, fn):
    with open(path) as f:
        data = json.load(f)
    fn(data)
    with open(path, 'w') as f:
        json.dump(data, f)


def test_missing_image(release, tmp_path):
    os.remove(release / 'Images/EVICAN_eval2019/2_MCF-7.jpg')
    msg = _expect_error(release, tmp_path, 'instances_eval2019_medium_EVICAN60.json: image 2_MCF-7.jpg not found')
    assert 'EVICAN_eval2019' in msg
    # documented skip
    summary = convert_release(str(release), str(tmp_path / 'skip'), skip_bad_images=True, verbose=False)
    assert summary['splits']['eval']['images'] == 1


def test_unreadable_jpg(release, tmp_path):
    (release / 'Images/EVICAN_train2019/a.jpg').write_bytes(b'\xff\xd8\xff\xe0 not really a jpeg')
    _expect_error(release, tmp_path, r'instances_train2019_EVICAN60.json: image .*a.jpg is unreadable')


def test_polygon_with_too_few_points_is_dropped_with_warning(release, tmp_path):
    _edit(release / 'instances_eval2019_easy_EVICAN60.json',
          lambda d: d['annotations'][0].update(segmentation=[[0, 0, 10, 10]]))
    summary = convert_release(str(release), str(tmp_path / 'o'), verbose=False)
    assert _load(str(tmp_path / 'o'), 'eval')['annotations'][0]['image_id'] == 2
    assert any('annotation 1: no valid polygon left' in w for w in summary['warnings'])


def test_annotation_for_unknown_image(release, tmp_path):
    _edit(release / 'instances_train2019_EVICAN60.json', lambda d: d['annotations'][0].update(image_id=99))
    _expect_error(release, tmp_path, 'instances_train2019_EVICAN60.json: annotation 1 refers to unknown image_id 99')


def test_unknown_category(release, tmp_path):
    _edit(release / 'instances_train2019_EVICAN60.json', lambda d: d['annotations'][1].update(category_id=42))
    _expect_error(release, tmp_path, 'annotation 2 has unknown category_id 42')


def test_unparsable_category_name(release, tmp_path):
    _edit(release / 'instances_train2019_EVICAN60.json',
          lambda d: d['categories'].append(dict(id=9, name='Blob', supercategory='thing')))
    _expect_error(release, tmp_path, "instances_train2019_EVICAN60.json: cannot parse category name.*'Blob'")


def test_duplicate_ids(release, tmp_path):
    _edit(release / 'instances_train2019_EVICAN60.json', lambda d: d['annotations'][1].update(id=1))
    _expect_error(release, tmp_path, r'instances_train2019_EVICAN60.json: duplicate annotation id \[1\]')


def test_image_size_mismatch_is_fixed_or_fails(release, tmp_path):
    _edit(release / 'instances_eval2019_easy_EVICAN60.json', lambda d: d['images'][0].update(width=40))
    summary = convert_release(str(release), str(tmp_path / 'o'), verbose=False)
    assert _load(str(tmp_path / 'o'), 'eval')['images'][0]['width'] == 16
    assert any('size fixed from 40x16 to 16x16' in w for w in summary['warnings'])
    _edit(release / 'instances_eval2019_easy_EVICAN60.json',
          lambda d: d['annotations'][0].update(segmentation=[[0, 0, 30, 0, 30, 10, 0, 10]]))
    _expect_error(release, tmp_path, 'is 16x16 but the JSON says 40x16')


def test_prepare_cli_one_line_error(release, tmp_path):
    os.remove(release / 'Images/EVICAN_train2019/a.jpg')
    res = subprocess.run([sys.executable, osp.join(ROOT, 'scripts/dataset_converters/prepare_evican.py'), str(release),
                          str(tmp_path / 'o')], capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.strip().count('\n') == 0
    assert res.stderr.startswith('prepare_evican: error: ') and 'a.jpg not found' in res.stderr


def _digest(root):
    h = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            p = osp.join(dirpath, name)
            h.update(osp.relpath(p, root).encode())
            with open(p, 'rb') as f:
                h.update(f.read())
    return h.hexdigest()


def test_generator_is_deterministic_and_in_release_layout(tmp_path):
    kw = dict(cultures=('HeLa', 'C2C12'), n_train=3, n_val=2, n_eval_per_level=2, size=96)
    make_synthetic_evican(str(tmp_path / 'a'), seed=3, **kw)
    make_synthetic_evican(str(tmp_path / 'b'), seed=3, **kw)
    make_synthetic_evican(str(tmp_path / 'c'), seed=4, **kw)
    assert _digest(tmp_path / 'a') == _digest(tmp_path / 'b') != _digest(tmp_path / 'c')
    names = sorted(os.listdir(tmp_path / 'a'))
    assert names == ['Images', 'instances_eval2019_difficult_EVICAN60.json',
                     'instances_eval2019_easy_EVICAN60.json', 'instances_eval2019_medium_EVICAN60.json',
                     'instances_train2019_EVICAN60.json', 'instances_val2019_EVICAN60.json']
    assert 'HeLa_Background.jpg' in os.listdir(tmp_path / 'a/Images/EVICAN_train2019')
    evals = sorted(os.listdir(tmp_path / 'a/Images/EVICAN_eval2019'))
    assert evals[0] == '1_C2C12.jpg' and len(evals) == 6
    img = cv2.imread(str(tmp_path / 'a/Images/EVICAN_eval2019' / evals[0]), cv2.IMREAD_UNCHANGED)
    assert img.ndim == 2 and img.dtype == np.uint8  # grayscale jpg
    with open(tmp_path / 'a/instances_train2019_EVICAN60.json') as f:
        train = json.load(f)
    assert all('bbox' not in a and 'area' not in a for a in train['annotations'])  # like the release


def test_partial_annotation_on_train(tmp_path):
    make_synthetic_evican(str(tmp_path), cultures=('HeLa',), n_train=4, n_val=1, n_eval_per_level=1,
                          size=128, annotate_frac=0.5, seed=0)
    from scripts.dataset_converters.synthetic_evican import culture_morphology, render_image
    rng = np.random.default_rng((0, 1, 0))
    _, objects = render_image(rng, 128, 128, culture_morphology(0), 0, 0.5)
    with open(tmp_path / 'instances_train2019_EVICAN60.json') as f:
        anns = [a for a in json.load(f)['annotations'] if a['image_id'] == 1 and a['category_id'] == 1]
    assert len(anns) == sum(ann for _, _, ann in objects) < len(objects)


@pytest.mark.parametrize('subset,n_classes,kinds', [('all', 6, {'cell', 'nucleus'}),
                                                     ('cell', 3, {'cell'}), ('nucleus', 3, {'nucleus'})])
def test_evican_dataset_subsets(prepared, subset, n_classes, kinds):
    ds = EvicanDataset(data_root=prepared, ann_file='annotations/instances_eval.json',
                       data_prefix=dict(img='images/eval/'), subset=subset, test_mode=True, pipeline=[])
    classes = ds.metainfo['classes']
    assert len(classes) == n_classes and set(ds.metainfo['kinds']) == kinds
    assert classes[0] == ('HeLa cell' if subset != 'nucleus' else 'HeLa nucleus')
    with open(osp.join(prepared, 'annotations/instances_eval.json')) as f:
        coco = json.load(f)
    name_of = {c['id']: c['name'] for c in coco['categories']}
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        assert info['difficulty'] in (1, 2, 3) and info['culture']
        assert 'label_cultures' not in info  # the class table is the dataset's metainfo, not per image
        expected = sorted(name_of[a['category_id']] for a in coco['annotations']
                          if a['image_id'] == info['img_id'] and name_of[a['category_id']] in classes)
        assert sorted(classes[inst['bbox_label']] for inst in info['instances']) == expected
        # one culture per eval image: every label is of that culture
        assert all(classes[inst['bbox_label']].startswith(info['culture']) for inst in info['instances'])
    # a culture's cell and nucleus share a hue
    if subset == 'all':
        import colorsys
        hue = [colorsys.rgb_to_hsv(*[c / 255 for c in p])[0] for p in ds.metainfo['palette']]
        assert hue[0] == pytest.approx(hue[1], abs=0.02) and hue[0] != pytest.approx(hue[2], abs=0.02)


def test_evican_dataset_errors(prepared):
    with pytest.raises(ValueError, match='subset must be one of'):
        EvicanDataset(data_root=prepared, ann_file='annotations/instances_eval.json', subset='cells')
    with pytest.raises(ValueError, match=r"unknown class\(es\) \['HeLa cytoplasm'\]"):
        EvicanDataset(data_root=prepared, ann_file='annotations/instances_eval.json',
                      metainfo=dict(classes=('HeLa cell', 'HeLa cytoplasm')), pipeline=[])


def test_anchor_statistics_on_known_boxes(prepared, tmp_path):
    from scripts.analysis_tools.anchor_stats import coverage, shape_iou, suggest_anchors
    wh = np.array([[10.0, 10.0]] * 60 + [[10.0, 40.0]] * 40)
    sug = suggest_anchors(wh, n_sizes=3)
    assert sug['sizes'] == [10, 14, 20] and sug['ratios'] == [1.0, 4.0]
    assert shape_iou(np.array([[10.0, 10.0]]), np.array([[20.0, 20.0]]))[0, 0] == pytest.approx(0.25)
    assert coverage(wh, [10, 20], [1.0, 4.0]) == 1.0
    assert coverage(wh, [40], [1.0]) == 0.0  # 10x10 vs 40x40: IoU 1/16
    res = subprocess.run([sys.executable, osp.join(ROOT, 'scripts/analysis_tools/dataset_stats.py'), prepared, '--out',
                          str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    report = json.load(open(tmp_path / 'anchor_stats.json'))
    assert set(report) == {'cell', 'nucleus'} and report['cell']['coverage_paper'] > 0.5
    assert (tmp_path / 'stats_hist.png').stat().st_size > 1000


def test_anchor_statistics_need_the_kind_of_each_category(tmp_path):
    from scripts.analysis_tools.anchor_stats import instance_shapes
    path = tmp_path / 'raw.json'
    path.write_text(json.dumps(dict(categories=[dict(id=1, name='HeLa cell', kind='cell'), dict(id=2, name='Nucleus')],
                                    annotations=[dict(id=1, image_id=1, category_id=1, bbox=[0, 0, 4, 4], area=16)])))
    with pytest.raises(ValueError, match=r'raw\.json: category \'Nucleus\' has no "kind"'):
        instance_shapes([str(path)])


def test_file_name_with_folder_prefix_or_other_case(release, tmp_path):
    _edit(release / 'instances_eval2019_easy_EVICAN60.json',
          lambda d: d['images'][0].update(file_name='EVICAN_eval2019/1_HELA.JPG'))
    convert_release(str(release), str(tmp_path / 'o'), verbose=False)
    assert _load(str(tmp_path / 'o'), 'eval')['images'][0]['file_name'] == '1_HeLa.jpg'
