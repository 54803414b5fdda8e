"""Class meaning: parse EVICAN category names into (culture, kind), the class table of a
``dataset_meta`` (:func:`class_table`) and the colours that show it (:func:`culture_palette`).

The exact EVICAN60 spellings are not known to us, so every likely one is accepted: ``HeLa cell``,
``HeLa_Nucleus``, ``nucleus HeLa``, ``MCF-7 (nuclei)``, or a name ``Cell``/``Nucleus`` with the culture
in ``supercategory``. EVICAN2 (``Cell``, ``Nucleus`` only) parses to culture ``None``.
"""
import colorsys
import re
from typing import Dict, List, Optional, Tuple

KINDS = ('cell', 'nucleus')  # the kinds a class can have
_KIND_WORD = r'(?P<kind>cells?|nucle(?:us|i)|nuc)'
_SEP = r'[\s_\-:/.,]+'
_PATTERNS = [
    re.compile(rf'^{_KIND_WORD}$', re.I),
    re.compile(rf'^(?P<culture>.+?){_SEP}{_KIND_WORD}$', re.I),
    re.compile(rf'^{_KIND_WORD}{_SEP}(?P<culture>.+)$', re.I),
    re.compile(rf'^(?P<culture>.+?)\s*[(\[]\s*{_KIND_WORD}\s*[)\]]$', re.I),
]
# supercategory values that carry no culture
_GENERIC = {'', 'none', 'cell', 'cells', 'nucleus', 'nuclei', 'object', 'objects', 'evican', 'biology'}


def _kind(word: str) -> str:
    return 'cell' if word.lower().startswith('cell') else 'nucleus'


def culture_key(culture: Optional[str]) -> str:
    """Spelling-insensitive key: ``MCF-7``, ``mcf7`` and ``MCF 7`` are one culture."""
    return re.sub(r'[^0-9a-z]', '', (culture or '').lower())


def parse_category(name: str, supercategory: Optional[str] = None) -> Optional[Tuple[Optional[str], str]]:
    """Return ``(culture, kind)`` for one category, or None if it cannot be parsed."""
    name = (name or '').strip()
    sup = (supercategory or '').strip()
    for pat in _PATTERNS:
        m = pat.match(name)
        if not m:
            continue
        culture = m.groupdict().get('culture')
        if culture is None and sup.lower() not in _GENERIC:
            culture = sup  # name is just the kind: culture lives in supercategory
        return (culture.strip(' _-') if culture else None), _kind(m.group('kind'))
    # name is the culture, supercategory the kind (e.g. name 'HeLa', supercategory 'Nucleus')
    m = _PATTERNS[0].match(sup)
    if m and name:
        return name, _kind(m.group('kind'))
    return None


def parse_categories(categories: List[dict], source: str) -> Dict[int, Tuple[Optional[str], str]]:
    """Parse every category of a COCO file; raise one error listing all names that do not parse."""
    parsed, bad = {}, []
    for cat in categories:
        res = parse_category(cat.get('name', ''), cat.get('supercategory'))
        if res is None:
            bad.append(repr(cat.get('name')))
        else:
            parsed[cat['id']] = res
    if bad:
        raise ValueError(f'{source}: cannot parse category name(s) {", ".join(bad)} into '
                         f'(culture, cell|nucleus); expected e.g. "HeLa cell", "HeLa_Nucleus", '
                         f'"nucleus HeLa" or name "Cell"/"Nucleus" with the culture as supercategory')
    return parsed


def class_name(culture: Optional[str], kind: str) -> str:
    """The normalized class name written by the converter: ``'<culture> <kind>'`` (or just the kind)."""
    return f'{culture} {kind}' if culture else kind


def class_table(dataset_meta: Optional[dict]) -> Tuple[Tuple[Optional[str], ...], Tuple[str, ...]]:
    """``(cultures, kinds)`` per label, from a ``dataset_meta`` (``classes`` + ``cultures``/``kinds``).

    This is the one place where class meaning is read: the model, the predictor, the hooks and the
    benchmarks take it from here. ``cultures``/``kinds`` are the ones EvicanDataset puts in its
    metainfo (and every checkpoint's ``meta.dataset_meta``); a meta that only has ``classes`` (e.g. a
    checkpoint written by plain mmdet) is parsed here with :func:`parse_category`. A culture of None
    means the classes carry none (EVICAN2: ``cell``, ``nucleus``). Raises ValueError naming every class
    whose kind (or, when parsing, whose culture and kind) is unknown.
    """
    meta = dataset_meta or {}
    classes = tuple(meta.get('classes') or ())
    if not classes:
        raise ValueError('dataset_meta has no "classes": the class table comes from the dataset '
                         '(DatasetMetaHook) or the checkpoint\'s meta.dataset_meta')
    cultures, kinds = meta.get('cultures'), meta.get('kinds')
    if cultures is None or kinds is None:
        parsed = [parse_category(name) for name in classes]
        bad = [name for name, p in zip(classes, parsed) if p is None]
        if bad:
            raise ValueError(f'dataset_meta: unknown culture/kind of class(es) {", ".join(map(repr, bad))} '
                             '(no "cultures"/"kinds" and the name does not parse; expected e.g. "HeLa cell")')
        return tuple(p[0] for p in parsed), tuple(p[1] for p in parsed)
    if not len(cultures) == len(kinds) == len(classes):
        raise ValueError(f'dataset_meta: {len(classes)} classes but {len(cultures)} cultures and '
                         f'{len(kinds)} kinds')
    bad = [name for name, kind in zip(classes, kinds) if kind not in KINDS]
    if bad:
        raise ValueError(f'dataset_meta: unknown kind of class(es) {", ".join(map(repr, bad))} '
                         f'(expected one of {KINDS})')
    return tuple(cultures), tuple(kinds)


def culture_palette(categories: List[dict]) -> List[tuple]:
    """One hue per culture: the cell bright, its nucleus a darker shade of the same hue."""
    cultures = sorted({culture_key(c.get('culture')) for c in categories})
    hue = {k: (i * 0.618034) % 1.0 for i, k in enumerate(cultures)}
    palette = []
    for c in categories:
        h = hue[culture_key(c.get('culture'))]
        s, v = (0.85, 1.0) if c.get('kind') == 'cell' else (0.95, 0.6)
        palette.append(tuple(int(round(255 * x)) for x in colorsys.hsv_to_rgb(h, s, v)))
    return palette
