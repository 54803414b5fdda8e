"""Inference for users: morphology, nucleus->cell linking, tiling merge, the predict command."""
import csv
import json
import math
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from deepcis_mm.apis import Predictor, link_nuclei, measure, read_image, tile_origins

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = 'configs/demo/deepcis_s14-dcnv2_fpn_demo_synthetic-evican.py'
CLASSES = ['HeLa cell', 'HeLa nucleus', 'MCF-7 cell', 'MCF-7 nucleus', 'SW-480 cell', 'SW-480 nucleus',
           'C2C12 cell', 'C2C12 nucleus']


def test_measure_rectangle_by_hand():
    m = np.zeros((40, 40), bool)
    m[5:25, 3:13] = True  # 10 wide, 20 high
    r = measure(m)
    assert r['area'] == 200
    assert r['perimeter'] == pytest.approx(2 * (9 + 19))  # contour through pixel centres
    assert r['equivalent_diameter'] == pytest.approx(math.sqrt(4 * 200 / math.pi))
    var_x, var_y = (10 ** 2 - 1) / 12, (20 ** 2 - 1) / 12  # variance of a uniform integer grid
    assert r['eccentricity'] == pytest.approx(math.sqrt(1 - var_x / var_y))
    assert r['solidity'] == pytest.approx(1.0)
    assert (r['centroid_x'], r['centroid_y']) == pytest.approx((7.5, 14.5))


def test_measure_l_shape_solidity_and_disk_eccentricity():
    m = np.zeros((10, 10), bool)
    m[:, :5] = True
    m[:5, :] = True  # L: 100 - 25 = 75 px; hull through pixel centres covers 100 - 15 px
    assert measure(m)['area'] == 75
    assert measure(m)['solidity'] == pytest.approx(75 / 85)
    yy, xx = np.mgrid[:61, :61]
    disk = (xx - 30) ** 2 + (yy - 30) ** 2 <= 20 ** 2
    assert measure(disk)['eccentricity'] < 0.05


def test_link_nuclei_to_containing_cell():
    a = np.zeros((20, 40), bool)
    a[:, :20] = True
    b = np.zeros((20, 40), bool)
    b[:, 20:] = True
    inside_b = np.zeros((20, 40), bool)
    inside_b[5:10, 25:30] = True
    straddling = np.zeros((20, 40), bool)
    straddling[5:10, 18:22] = True  # half in a, half in b: no cell holds most of it
    outside = np.zeros((20, 40), bool)
    assert link_nuclei([inside_b, straddling, outside], [a, b]) == [1, None, None]


def test_tiling_keeps_an_object_across_a_tile_border_once():
    img = np.zeros((300, 300, 3), np.uint8)
    img[110:150, 130:170] = 255  # crosses the border between tiles starting at 0 and 96 (tile 200)
    pred = Predictor.__new__(Predictor)
    pred.tile_size, pred.tile_overlap = 200, 96

    def fake_infer(tiles):  # a detector that finds every complete white square in a tile
        out = []
        for t in tiles:
            n, lab, stats, _ = cv2.connectedComponentsWithStats((t[..., 0] > 0).astype(np.uint8))
            boxes, masks = [], []
            for i in range(1, n):
                x, y, w, h, _ = stats[i]
                if x > 0 and y > 0 and x + w < t.shape[1] and y + h < t.shape[0]:  # fully visible
                    boxes.append([x, y, x + w, y + h])
                    masks.append(lab == i)
            out.append(InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32).view(-1, 4),
                                    scores=torch.full((len(boxes),), 0.9), labels=torch.zeros(len(boxes), dtype=torch.long),
                                    masks=torch.from_numpy(np.array(masks, bool).reshape(-1, *t.shape[:2]))))
        return out

    pred._infer = fake_infer
    assert tile_origins(300, 200, 96) == [0, 100]
    res = pred._infer_tiled(img)
    assert len(res) == 1
    assert res.bboxes[0].tolist() == [130, 110, 170, 150]
    assert torch.equal(res.masks[0], torch.from_numpy(img[..., 0] > 0))


def test_read_image_formats(tmp_path):
    gray = (np.arange(64 * 48).reshape(48, 64) % 256).astype(np.uint8)
    cv2.imwrite(str(tmp_path / 'g.png'), gray)
    cv2.imwrite(str(tmp_path / 's.tif'), gray.astype(np.uint16) * 256)
    cv2.imwrite(str(tmp_path / 'c.jpg'), np.dstack([gray] * 3))
    for name in ('g.png', 's.tif', 'c.jpg'):
        img = read_image(str(tmp_path / name))
        assert img.shape == (48, 64, 3) and img.dtype == np.uint8
    # 16-bit: its 8-bit rendering (high byte), as in training (deepcis_mm.datasets.normalize_intensity)
    assert np.array_equal(read_image(str(tmp_path / 's.tif'))[..., 0], gray)


@pytest.fixture(scope='module')
def random_checkpoint(tmp_path_factory):
    """The demo model with random weights, saved like tools/train.py saves (class names in meta)."""
    from mmdet.registry import MODELS
    from mmengine.config import Config

    from deepcis_mm.engine import apply_cpu_fallback
    cfg = Config.fromfile(osp.join(ROOT, DEMO))
    apply_cpu_fallback(cfg, force=True)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    path = str(tmp_path_factory.mktemp('ckpt') / 'model.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict(dataset_meta=dict(classes=CLASSES))), path)
    return path


def _predict(*args):
    return subprocess.run([sys.executable, 'scripts/predict.py', *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_predict_command_outputs(random_checkpoint, tmp_path):
    from pycocotools.coco import COCO
    inp = tmp_path / 'in'
    inp.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(inp / 'a.png'), rng.integers(0, 255, (96, 128), dtype=np.uint8))
    cv2.imwrite(str(inp / 'b.tif'), rng.integers(0, 65535, (80, 80), dtype=np.uint16))
    out = tmp_path / 'out'
    res = _predict(str(inp), '--config', DEMO, '--checkpoint', random_checkpoint, '--out', str(out),
                   '--score-thr', '0', '--quiet')
    assert res.returncode == 0, res.stderr[-2000:]
    rows = list(csv.DictReader(open(out / 'instances.csv')))
    assert rows and {r['image'] for r in rows} <= {'a.png', 'b.tif'}
    coco = COCO(str(out / 'coco_instances.json'))
    assert len(coco.anns) == len(rows) and len(coco.imgs) == 2
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == CLASSES
    results = json.load(open(out / 'coco_results.json'))
    assert len(results) == len(rows) and 'counts' in results[0]['segmentation']
    for stem in ('a', 'b'):
        gj = json.load(open(out / 'geojson' / f'{stem}.geojson'))
        assert gj['type'] == 'FeatureCollection'
        for f in gj['features']:
            assert f['geometry']['type'] == 'Polygon' and f['properties']['classification']['name'] in CLASSES
        assert (out / 'overlays' / f'{stem}.png').is_file()
        cell = cv2.imread(str(out / 'labels' / f'{stem}_cell.png'), cv2.IMREAD_UNCHANGED)
        assert cell.dtype == np.uint16
        # every labelled pixel belongs to a cell row of that image whose area covers it
        img_rows = {int(r['instance_id']): r for r in rows if r['image'].startswith(stem)}
        for inst_id in np.unique(cell[cell > 0]):
            assert img_rows[int(inst_id)]['kind'] == 'cell'
            assert int((cell == inst_id).sum()) <= int(img_rows[int(inst_id)]['area'])
    nuclei = [r for r in rows if r['kind'] == 'nucleus' and r['parent_cell_id']]
    for r in nuclei:
        parent = [p for p in rows if p['image'] == r['image'] and p['instance_id'] == r['parent_cell_id']]
        assert parent[0]['kind'] == 'cell' and parent[0]['nucleus_cell_area_ratio']


def test_predict_bad_inputs(random_checkpoint, tmp_path):
    empty = tmp_path / 'empty'
    empty.mkdir()
    res = _predict(str(empty), '--config', DEMO, '--checkpoint', random_checkpoint, '--out', str(tmp_path / 'o1'))
    assert res.returncode == 2 and 'no images' in res.stderr.strip().splitlines()[-1]
    bad = tmp_path / 'bad'
    bad.mkdir()
    (bad / 'x.png').write_bytes(b'not an image')
    res = _predict(str(bad), '--config', DEMO, '--checkpoint', random_checkpoint, '--out', str(tmp_path / 'o2'))
    assert res.returncode == 2 and 'x.png: unreadable image' in res.stderr
    assert not (tmp_path / 'o2' / 'instances.csv').exists()
    other = 'configs/baselines/mask-rcnn_r18-c16_fpn_demo_synthetic-evican.py'
    cv2.imwrite(str(bad / 'x.png'), np.zeros((32, 32), np.uint8))
    res = _predict(str(bad), '--config', other, '--checkpoint', random_checkpoint, '--out', str(tmp_path / 'o3'))
    assert res.returncode == 2 and 'does not fit' in res.stderr
    assert not os.path.exists(tmp_path / 'o3')
