"""Instance masks as polygons traced along pixel edges (GeoJSON geometry).

Pixel (row r, column c) is the unit square x in [c, c+1], y in [r, r+1]. The boundary of a mask is
the set of square edges between a mask pixel and a background pixel, so the polygon covers exactly
the mask's pixels: its area is the pixel count and every pixel centre of the mask lies inside it.
Parts are 4-connected pixel sets (pixels touching only at a corner are separate parts of a
MultiPolygon); where a part's boundary touches itself at a corner, the ring is split there into a
shell and a hole that share that one point, which keeps the geometry valid (OGC / shapely).
"""
from typing import Dict, List, Optional

import cv2
import numpy as np


def _boundary_edges(mask: np.ndarray, comp: np.ndarray):
    """Directed pixel edges with the mask on a fixed side: (start x, start y, end x, end y, part)."""
    p = np.pad(mask, 1)
    inner = p[1:-1, 1:-1]
    out = []
    # (neighbour is background, start corner offset (dx, dy), end corner offset) per side
    for bg, s, e in ((~p[:-2, 1:-1], (1, 0), (0, 0)),     # top: right -> left
                     (~p[1:-1, :-2], (0, 0), (0, 1)),     # left: top -> bottom
                     (~p[2:, 1:-1], (0, 1), (1, 1)),      # bottom: left -> right
                     (~p[1:-1, 2:], (1, 1), (1, 0))):     # right: bottom -> top
        r, c = np.nonzero(inner & bg)
        out.append(np.stack([c + s[0], r + s[1], c + e[0], r + e[1], comp[r, c]], 1))
    return np.concatenate(out)


def _split_simple(cycle: List[int]) -> List[List[int]]:
    """Split a closed vertex walk at repeated vertices into simple closed loops."""
    loops, path, pos = [], [], {}
    for v in cycle:
        if v in pos:
            i = pos[v]
            loops.append(path[i:])
            for u in path[i + 1:]:
                del pos[u]
            path = path[:i + 1]
        else:
            pos[v] = len(path)
            path.append(v)
    if len(path) > 2:
        loops.append(path)
    return [lp for lp in loops if len(lp) > 2]


def _drop_collinear(ring: np.ndarray) -> np.ndarray:
    prev, nxt = np.roll(ring, 1, 0), np.roll(ring, -1, 0)
    d1, d2 = ring - prev, nxt - ring
    turn = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0] != 0
    return ring[turn]


def _signed_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0].astype(np.float64), ring[:, 1].astype(np.float64)
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def mask_geometry(mask: np.ndarray, x0: int = 0, y0: int = 0) -> Optional[Dict]:
    """GeoJSON ``Polygon``/``MultiPolygon`` of a boolean mask along its pixel edges, or None if empty.

    ``(x0, y0)``: position of the mask's top-left pixel in the image (for masks cropped to their box).
    Shells are counter-clockwise and holes clockwise in (x, y) numbers (RFC 7946 right-hand rule).
    """
    mask = np.asarray(mask, bool)
    if not mask.any():
        return None
    n, comp = cv2.connectedComponents(mask.astype(np.uint8), connectivity=4)
    edges = _boundary_edges(mask, comp)
    width = mask.shape[1] + 1
    start = edges[:, 1] * width + edges[:, 0]
    end = edges[:, 3] * width + edges[:, 2]
    order = np.argsort(start, kind='stable')
    sorted_start = start[order]
    lo = np.searchsorted(sorted_start, end, 'left')
    hi = np.searchsorted(sorted_start, end, 'right')
    # successor of each edge: the edge leaving its end corner. Where two pixels of the mask meet only at
    # a corner, two edges leave it: take the one that turns the same way as the corner of the same
    # pixel (edges of one pixel turn with cross product < 0), so every edge has one predecessor
    succ = order[lo].copy()
    for i in np.nonzero(hi - lo > 1)[0]:
        cands = order[lo[i]:hi[i]]
        din = edges[i, 2:4] - edges[i, 0:2]
        dout = edges[cands, 2:4] - edges[cands, 0:2]
        succ[i] = cands[np.argmin(din[0] * dout[:, 1] - din[1] * dout[:, 0])]
    seen = np.zeros(len(edges), bool)
    parts: Dict[int, Dict[str, list]] = {}
    for e0 in range(len(edges)):
        if seen[e0]:
            continue
        cycle, e = [], e0
        while not seen[e]:
            seen[e] = True
            cycle.append(int(start[e]))
            e = succ[e]
        for loop in _split_simple(cycle):
            ring = np.stack([np.array(loop) % width, np.array(loop) // width], 1)
            ring = _drop_collinear(ring)
            # edges run with the mask on the right in (x, y) numbers: shells come out clockwise
            area = -_signed_area(ring)
            slot = parts.setdefault(int(edges[e0, 4]), dict(shells=[], holes=[]))
            slot['shells' if area > 0 else 'holes'].append(ring[::-1])
    polygons = []
    for part in sorted(parts):
        shells, holes = parts[part]['shells'], parts[part]['holes']
        assert len(shells) == 1, 'a 4-connected pixel set has one outer boundary'
        polygons.append([_ring_coords(r, x0, y0) for r in shells + holes])
    if len(polygons) == 1:
        return dict(type='Polygon', coordinates=polygons[0])
    return dict(type='MultiPolygon', coordinates=polygons)


def _ring_coords(ring: np.ndarray, x0: int, y0: int) -> List[List[int]]:
    pts = [[int(x) + x0, int(y) + y0] for x, y in ring]
    return pts + [pts[0]]
