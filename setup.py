"""Packaging for DeepCIS. Metadata lives in setup.cfg; this file only adds mmdet's `.mim` extension so
that `mim train deepcis_mm <config>` finds our configs and tools."""
import os
import os.path as osp
import shutil
import sys

from setuptools import setup

MIM_ITEMS = ('configs', 'tools')


def add_mim_extension():
    """Link (editable/develop) or copy (wheel/sdist) configs/ and tools/ into deepcis_mm/.mim."""
    copy = any(cmd in sys.argv for cmd in ('bdist_wheel', 'sdist'))
    here = osp.dirname(osp.abspath(__file__))
    mim_dir = osp.join(here, 'deepcis_mm', '.mim')
    os.makedirs(mim_dir, exist_ok=True)
    for item in MIM_ITEMS:
        src, dst = osp.join(here, item), osp.join(mim_dir, item)
        if osp.islink(dst) and not copy:
            continue
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if copy:
            shutil.copytree(src, dst)
        else:
            os.symlink(osp.relpath(src, mim_dir), dst)


if __name__ == '__main__':
    add_mim_extension()
    setup()
