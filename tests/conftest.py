import os
import os.path as osp
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault('OMP_NUM_THREADS', '2')

import deepcis_mm  # noqa: E402,F401  (registers modules before mmdet's own registration)
from mmdet.utils import register_all_modules  # noqa: E402

register_all_modules(init_default_scope=True)


@pytest.fixture(autouse=True)
def mmdet_default_scope():
    """Every test starts in mmdet's registry scope: a test that builds an mmengine runner leaves
    another scope current, and registry lookups of later tests would then depend on the order."""
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')


@pytest.fixture(scope='session')
def synthetic_release(tmp_path_factory):
    """A small synthetic release (3 cultures) in the EVICAN layout."""
    from scripts.dataset_converters.synthetic_evican import make_synthetic_evican
    root = str(tmp_path_factory.mktemp('release'))
    make_synthetic_evican(root, cultures=('HeLa', 'MCF-7', 'SW-480'), n_train=6, n_val=3,
                          n_eval_per_level=3, size=128, seed=1)
    return root


@pytest.fixture(scope='session')
def prepared(synthetic_release, tmp_path_factory):
    """The synthetic release normalized by the converter."""
    from scripts.dataset_converters.evican_release import convert_release
    dst = str(tmp_path_factory.mktemp('prepared'))
    convert_release(synthetic_release, dst, verbose=False)
    return dst
