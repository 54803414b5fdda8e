"""Prediction outputs from known masks: pixel-edge polygons, RLE from crops, the overlap rule."""
import numpy as np
import pytest

from deepcis_mm.apis import Instances, label_image, mask_geometry, mask_rle, parent_label, resolve_overlaps

shapely = pytest.importorskip('shapely')  # requirements/tests.txt; here to say what is missing
from shapely.geometry import shape  # noqa: E402

KINDS = ['cell', 'nucleus']


def _check_geometry(mask, x0=0, y0=0):
    geom = shape(mask_geometry(mask, x0, y0))
    assert geom.is_valid, shapely.validation.explain_validity(geom)
    assert geom.area == mask.sum()
    # every pixel centre of the mask inside, every other one outside
    ys, xs = np.mgrid[:mask.shape[0], :mask.shape[1]]
    inside = shapely.contains_xy(geom, xs.ravel() + x0 + 0.5, ys.ravel() + y0 + 0.5).reshape(mask.shape)
    assert np.array_equal(inside, mask)
    return geom


def test_polygon_of_one_pixel_and_a_rectangle_by_hand():
    g = mask_geometry(np.ones((1, 1), bool), 5, 7)
    assert g == dict(type='Polygon', coordinates=[[[6, 7], [6, 8], [5, 8], [5, 7], [6, 7]]]) or \
        shape(g).equals(shape(dict(type='Polygon', coordinates=[[[5, 7], [6, 7], [6, 8], [5, 8], [5, 7]]])))
    m = np.zeros((6, 9), bool)
    m[1:4, 2:8] = True
    g = _check_geometry(m)
    assert g.geom_type == 'Polygon' and len(g.exterior.coords) == 5  # collinear corners dropped
    assert g.bounds == (2, 1, 8, 4)
    assert shape(mask_geometry(m)).exterior.is_ccw  # RFC 7946 right-hand rule in (x, y) numbers


def test_polygon_hole_pinches_and_diagonal_parts():
    ring = np.zeros((7, 7), bool)
    ring[1:6, 1:6] = True
    ring[3, 3] = False  # a hole
    g = _check_geometry(ring)
    assert g.geom_type == 'Polygon' and len(g.interiors) == 1 and g.area == 24
    diag = np.array([[1, 0], [0, 1]], bool)  # two pixels meeting at one corner: two parts
    g = _check_geometry(diag)
    assert g.geom_type == 'MultiPolygon' and len(g.geoms) == 2
    # a hole that touches the outer boundary at one corner: shell and hole share that point
    pinch = np.ones((5, 5), bool)
    pinch[1:4, 1:4] = False
    pinch[0, 0] = False  # the hole meets the outside at the corner of pixels (0, 0) and (1, 1)
    pinch = np.pad(pinch, 1)
    g = _check_geometry(pinch)
    assert g.geom_type == 'Polygon' and len(g.interiors) == 1 and g.area == 15


@pytest.mark.parametrize('density', [0.3, 0.5, 0.7])
def test_polygons_of_random_masks_are_valid_and_exact(density):
    rng = np.random.default_rng(int(density * 10))
    for _ in range(20):
        m = rng.random((int(rng.integers(1, 25)), int(rng.integers(1, 25)))) < density
        if m.any():
            _check_geometry(m, int(rng.integers(0, 50)), int(rng.integers(0, 50)))


def test_rle_from_a_crop_equals_the_full_mask_rle():
    from pycocotools import mask as mask_utils
    rng = np.random.default_rng(0)
    for h, w, x0, y0 in [(5, 4, 0, 0), (7, 3, 10, 20), (1, 1, 29, 39), (12, 9, 18, 28), (40, 30, 0, 0)]:
        crop = rng.random((h, w)) < 0.5
        crop[0, 0] = crop[-1, -1] = True  # touching the crop's top and bottom rows
        full = np.zeros((40, 30), np.uint8)
        full[y0:y0 + h, x0:x0 + w] = crop
        rle = mask_rle(crop, x0, y0, (40, 30))
        assert np.array_equal(mask_utils.decode(rle), full)
        assert rle['counts'] == mask_utils.encode(np.asfortranarray(full))['counts'].decode()


def _inst(shape, boxes, scores, labels, truncated=None):
    """Rectangles (x0, y0, x1, y1) as cropped masks."""
    masks = [np.ones((y1 - y0, x1 - x0), bool) for x0, y0, x1, y1 in boxes]
    return Instances(shape, np.array(boxes, np.float32), np.array(scores, np.float32), np.array(labels),
                     np.array([b[:2] for b in boxes]), masks,
                     np.array(truncated if truncated is not None else [False] * len(boxes)))


def test_overlap_rule_within_a_kind():
    inst = _inst((50, 50), [(0, 0, 20, 20), (10, 0, 30, 20), (2, 2, 18, 18), (5, 5, 10, 10), (40, 40, 45, 45)],
                 [0.6, 0.9, 0.5, 0.8, 0.7], [0, 0, 0, 1, 0])
    out = resolve_overlaps(inst, KINDS)
    # by score: cell 0.9 (all 400 px), nucleus 0.8 (inside a cell: kept whole), cell 0.7, cell 0.6 keeps its
    # left half (200 of 400 px = 50 %); cell 0.5 lies under pixels already claimed: dropped
    assert out.scores.tolist() == pytest.approx([0.9, 0.8, 0.7, 0.6])
    assert out.areas().tolist() == [400, 25, 25, 200]
    assert out.bboxes[3].tolist() == [0, 0, 10, 20]  # the box follows what is left of the mask
    cells = label_image(out, KINDS, 'cell')
    assert cells.dtype == np.uint16 and set(np.unique(cells)) == {0, 1, 3, 4}
    assert [int((cells == i).sum()) for i in (1, 3, 4)] == [400, 25, 200]
    assert parent_label(out.masks[1], out.origins[1], cells) == 4  # nucleus at x 5..10 lies in cell 4's half


def test_overlap_rule_complete_before_truncated():
    # the same object seen whole (score 0.6) and cut at a tile side (score 0.9): the whole one stays
    inst = _inst((40, 40), [(5, 5, 25, 25), (5, 5, 15, 25)], [0.6, 0.9], [0, 0], truncated=[False, True])
    out = resolve_overlaps(inst, KINDS)
    assert len(out) == 1 and out.scores[0] == pytest.approx(0.6) and out.areas()[0] == 400


def test_label_image_beyond_uint16_ids():
    inst = _inst((4, 4), [(0, 0, 1, 1)], [0.5], [0])
    lab = label_image(inst, KINDS, 'cell', ids=[70000])
    assert lab.dtype == np.uint32 and lab[0, 0] == 70000


def test_image_ap50_is_right_and_silent(capsys):
    """The overlay caption's AP50 of one image: a perfect and a missed detection, no pycocotools chatter."""
    import contextlib
    import io

    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    from deepcis_mm.evaluation.image_ap import image_ap50
    m = np.zeros((32, 32), np.uint8)
    m[4:12, 4:12] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    rle['counts'] = rle['counts'].decode()
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dict(images=[dict(id=7, file_name='a.png', width=32, height=32)],
                          categories=[dict(id=3, name='HeLa cell')],
                          annotations=[dict(id=1, image_id=7, category_id=3, segmentation=rle, area=64.0,
                                            bbox=[4, 4, 8, 8], iscrowd=0)])
        gt.createIndex()
    capsys.readouterr()
    hit = dict(image_id=7, category_id=3, segmentation=rle, score=0.9)
    far = np.zeros((32, 32), np.uint8)
    far[20:28, 20:28] = 1
    miss_rle = mask_utils.encode(np.asfortranarray(far))
    miss_rle['counts'] = miss_rle['counts'].decode()
    assert image_ap50(gt, 7, [hit]) == pytest.approx(1.0)
    assert image_ap50(gt, 7, [dict(hit, segmentation=miss_rle)]) == pytest.approx(0.0)
    assert capsys.readouterr().out == ''
