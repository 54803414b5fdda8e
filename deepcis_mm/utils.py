"""Small shared helpers."""
import json
import os
import tempfile


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file in the same folder and a rename: never half-written."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.tmp-', suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, 'w') as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_json(path: str, obj, **kwargs) -> None:
    """JSON variant of :func:`atomic_write_text` (compact, stable key order by default)."""
    kwargs.setdefault('separators', (',', ':'))
    atomic_write_text(path, json.dumps(obj, **kwargs))


def atomic_save(path: str, save_fn) -> None:
    """Call ``save_fn(tmp_path)`` (e.g. ``fig.savefig``/``cv2.imwrite``) then rename onto ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base, ext = os.path.splitext(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f'.tmp-{base}', suffix=ext)
    os.close(fd)
    try:
        save_fn(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
