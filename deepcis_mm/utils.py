"""Small shared helpers."""
import json
import os
import tempfile
import threading

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask (read by setting and restoring it; the lock keeps threads from racing)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _publish(tmp: str, path: str) -> None:
    """Give the temp file the mode a plain ``open(path, 'w')`` would (0o666 minus the umask; mkstemp
    makes it 0600, unreadable for colleagues on a shared cluster), then rename it onto ``path``."""
    os.chmod(tmp, 0o666 & ~current_umask())
    os.replace(tmp, path)


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file in the same folder and a rename: never half-written."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.tmp-', suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, 'w') as f:
            f.write(text)
        _publish(tmp, path)
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
        _publish(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def markdown_table(header, rows) -> str:
    """The one markdown table writer: a header row, the separator, one line per row (cells as given,
    turned into text with ``str``); no trailing newline."""
    lines = ['| ' + ' | '.join(map(str, header)) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(map(str, row)) + ' |' for row in rows]
    return '\n'.join(lines)
