"""The output folder of ``deepcis predict``, written all at once: staged beside it, renamed into place."""
import os
import os.path as osp
import shutil
import tempfile

from .errors import InputError

MARKER = '.deepcis-predict'  # names a folder as predict output, so that --overwrite may replace it


class OutputFolder:
    """An output folder written all at once: files go to a hidden staging folder beside it, and
    :meth:`commit` renames that into place (replacing an earlier predict output with ``overwrite``).

    An existing non-empty folder is refused unless ``overwrite``; even then only a folder that an
    earlier ``deepcis predict`` wrote (it holds the marker file) is replaced.
    """

    def __init__(self, out: str, overwrite: bool = False):
        self.out = osp.abspath(out)
        if osp.exists(self.out) and not osp.isdir(self.out):
            raise InputError(f'{out}: exists and is not a folder')
        self.replace = osp.isdir(self.out) and bool(os.listdir(self.out))
        if self.replace and not overwrite:
            raise InputError(f'{out}: output folder exists and is not empty (use --overwrite to replace it)')
        if self.replace and not osp.isfile(osp.join(self.out, MARKER)):
            raise InputError(f'{out}: not an output folder of deepcis predict (no {MARKER}); '
                             'refusing to replace it, choose another --out')
        parent = osp.dirname(self.out)
        try:
            os.makedirs(parent, exist_ok=True)
            self.stage = tempfile.mkdtemp(prefix=f'.{osp.basename(self.out)}.partial-', dir=parent)
        except OSError as e:
            raise InputError(f'{out}: cannot write there ({e.strerror})') from None
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.stage, 0o777 & ~umask)  # mkdtemp makes it private; the result is a normal folder

    def path(self, *parts: str) -> str:
        """Path of a file inside the staging folder (its folder created)."""
        p = osp.join(self.stage, *parts)
        os.makedirs(osp.dirname(p), exist_ok=True)
        return p

    def commit(self) -> None:
        open(self.path(MARKER), 'w').close()
        if self.replace:
            old = tempfile.mkdtemp(prefix=f'.{osp.basename(self.out)}.old-', dir=osp.dirname(self.out))
            os.rename(self.out, osp.join(old, 'previous'))
            os.rename(self.stage, self.out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if osp.isdir(self.out):
                os.rmdir(self.out)  # empty
            os.rename(self.stage, self.out)

    def abort(self) -> None:
        shutil.rmtree(self.stage, ignore_errors=True)
