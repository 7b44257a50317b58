"""Input checks that need no toolbox: files, config text, options, device.

``tools/explain.py`` runs these before it imports torch, MMAction2 or the
rest of mmxai (that takes seconds), so an input error is one line in well
under two seconds. Only the standard library and ``mmengine.config`` are
used here; ``mmxai.errors`` is imported absolutely so that the CLI can load
both files without the package's heavy ``__init__``.

What is checked here: the config (found, parses, ``--cfg-options`` keys and
value types), the checkpoint and video files (present, not empty, not each
other), the output folder, the device string, the label map (against the
config's number of classes), the target, and a dataset run's annotation
file. What needs the model (method, layers, method options) is checked
after the imports, still before anything is written.
"""
import difflib
import glob
import importlib.util
import os
import os.path as osp
import re
from typing import Any, Dict, Optional

from mmxai.errors import ConfigError, InputError, OutputError, TargetError

__all__ = ['resolve_config_path', 'load_config', 'import_custom_modules',
           'check_cfg_options',
           'file_kind', 'check_checkpoint_file', 'check_video_file',
           'check_out_dir', 'check_device_name', 'check_label_map',
           'check_target', 'config_num_classes', 'check_annotation_file',
           'builtin_method_names', 'check_method_name',
           'parse_time_spec', 'to_frames', 'read_ground_truth',
           'check_long_video_options']

_VIDEO_EXT = ('.mp4', '.avi', '.mkv', '.mov', '.webm', '.m4v', '.mpg',
              '.mpeg', '.wmv', '.flv', '.gif', '.3gp', '.ts')
_CKPT_EXT = ('.pth', '.pt', '.ckpt', '.bin', '.pkl', '.tar')


def resolve_config_path(config) -> str:
    """Turn ``'mmaction::recognition/tsn/x.py'`` into the packaged file.

    ``<pkg>::<rel>`` resolves to ``<pkg dir>/.mim/configs/<rel>`` (where
    OpenMMLab wheels ship their configs); other paths are returned as given.

    Raises:
        InputError: the package or the file does not exist.
    """
    config = os.fspath(config)
    if '::' not in config:
        return config
    package, rel = config.split('::', 1)
    spec = importlib.util.find_spec(package) if package.isidentifier() \
        else None  # a top-level find_spec imports nothing
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f'config {config!r}: package {package!r} is not '
                         'installed')
    root = list(spec.submodule_search_locations)[0]
    path = osp.join(root, '.mim', 'configs', rel)
    if not osp.isfile(path):
        raise InputError(f'config not found: {config!r} (looked for {path})')
    return path


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


def load_config(config, cfg_options: Optional[dict] = None):
    """Read a config file (``.py``, ``.json``, ``.yaml``) and merge
    ``cfg_options`` into it, after :func:`check_cfg_options`.

    Raises:
        InputError: the file is missing.
        ConfigError: it does not parse or raises, or an option is wrong.
    """
    from mmengine.config import Config
    if isinstance(config, Config):
        import copy
        cfg = copy.deepcopy(config)
        import_custom_modules(cfg)
    else:
        if not isinstance(config, (str, os.PathLike)):
            raise ConfigError('config must be a filename or mmengine.Config,'
                              f' not {type(config).__name__}')
        path = resolve_config_path(config)
        if not osp.isfile(path):
            raise InputError(f'config file not found: {os.fspath(config)!r}')
        try:  # custom_imports later (they may import the toolbox: seconds)
            cfg = Config.fromfile(path, import_custom_modules=False)
        except Exception as e:  # noqa: BLE001 - any failure is the file's
            raise ConfigError(
                f'cannot read config {os.fspath(config)!r}: '
                f'{type(e).__name__}: {_first_line(e)}; fix the file') \
                from None
    if cfg_options:
        check_cfg_options(cfg, cfg_options)
        try:
            cfg.merge_from_dict(cfg_options)
        except Exception as e:  # noqa: BLE001 - MMEngine refuses the merge
            raise ConfigError(f'--cfg-options: {type(e).__name__}: '
                              f'{_first_line(e)}') from None
    return cfg


def import_custom_modules(cfg) -> None:
    """Import the config's ``custom_imports`` (what ``Config.fromfile``
    does by default; :func:`load_config` defers it to here).

    Raises:
        ConfigError: a module cannot be imported.
    """
    custom = cfg.get('custom_imports')
    if not custom:
        return
    from mmengine.utils import import_modules_from_strings
    try:
        import_modules_from_strings(**custom)
    except ImportError as e:
        raise ConfigError(f'custom_imports of the config: {_first_line(e)}'
                          ) from None


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return 'bool'
    if isinstance(value, (int, float)):
        return 'number'
    if isinstance(value, str):
        return 'str'
    if isinstance(value, dict):
        return 'dict'
    if isinstance(value, (list, tuple)):
        return 'list'
    return 'other'


def check_cfg_options(cfg, options: Dict[str, Any]) -> None:
    """Refuse ``--cfg-options`` that cannot be what the user meant.

    * the first part of a key is not a key of the config (``modle.x``);
    * a key goes through a value that is not a dict (``a.b`` with ``a=1``);
    * a value's kind (number, string, bool, dict, list) differs from the
      value it replaces (``num_classes=abc``); ``None`` takes anything.

    Raises:
        ConfigError: naming the option and the fix.
    """
    for key, value in options.items():
        parts = str(key).split('.')
        if not all(parts):
            raise ConfigError(f'--cfg-options {key}: empty part in the key')
        top = parts[0]
        if top not in cfg:
            near = difflib.get_close_matches(top, list(cfg.keys()), n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ''
            raise ConfigError(f"--cfg-options {key}: the config has no "
                              f"'{top}'{hint}")
        node: Any = cfg
        for i, part in enumerate(parts):
            if isinstance(node, (list, tuple)) and part.isdigit():
                if int(part) >= len(node):
                    raise ConfigError(
                        f'--cfg-options {key}: '
                        f"'{'.'.join(parts[:i])}' has {len(node)} items")
                node = node[int(part)]
                if not isinstance(node, dict):
                    raise ConfigError(
                        f'--cfg-options {key}: only dict items of a list can '
                        f"be set; give the whole list: "
                        f"{'.'.join(parts[:i])}=[...]")
                continue
            if not (isinstance(node, dict) or i == 0):  # 0: the Config
                raise ConfigError(
                    f"--cfg-options {key}: '{'.'.join(parts[:i])}' is "
                    f'{node!r}, not a dict')
            if part not in node:
                node = None
                break
            node = node[part]
        if node is None or value is None:
            continue
        old, new = _kind(node), _kind(value)
        if old != new and 'other' not in (old, new) and \
                not (old == 'dict' and new == 'dict'):
            raise ConfigError(
                f'--cfg-options {key}={value!r}: expected a {old} like '
                f'{node!r}')


def config_num_classes(cfg) -> Optional[int]:
    """``cfg.model.cls_head.num_classes`` if the config states it."""
    model = cfg.get('model') if hasattr(cfg, 'get') else None
    head = model.get('cls_head') if isinstance(model, dict) else None
    n = head.get('num_classes') if isinstance(head, dict) else None
    return n if isinstance(n, int) and not isinstance(n, bool) else None


_MAGIC = (
    (b'PK\x03\x04', 'zip'),
    (b'\x1aE\xdf\xa3', 'video'),  # Matroska / WebM
    (b'RIFF', 'video'),  # AVI
    (b'GIF8', 'video'),
    (b'\x00\x00\x01\xba', 'video'),  # MPEG-PS
    (b'FLV', 'video'),
)


def file_kind(path: str) -> str:
    """``'empty'``, ``'zip'`` (torch.save), ``'pickle'`` (legacy torch),
    ``'video'``, ``'text'`` or ``'other'``, from the first bytes."""
    with open(path, 'rb') as f:
        head = f.read(64)
    if not head:
        return 'empty'
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if head[4:8] == b'ftyp':
        return 'video'  # ISO-BMFF (mp4, mov)
    if head[:1] == b'\x80' and head[1:2] in (b'\x02', b'\x03', b'\x04',
                                            b'\x05'):
        return 'pickle'
    try:
        head.decode('utf-8')
        return 'text'
    except UnicodeDecodeError:
        return 'other'


_USAGE = 'tools/explain.py CONFIG CHECKPOINT [VIDEO]'


def check_checkpoint_file(checkpoint: Optional[str],
                          video: Optional[str] = None) -> None:
    """A local checkpoint exists, is not empty and is not a video.

    Raises:
        InputError: naming the file (and the usage, for a video given where
            the checkpoint goes).
    """
    if checkpoint is None or re.match(r'^https?://', str(checkpoint)):
        return
    if not osp.exists(checkpoint):
        if video is None and str(checkpoint).lower().endswith(_VIDEO_EXT):
            raise InputError(f'{checkpoint!r} looks like a video and no '
                             f'checkpoint was given; usage: {_USAGE}')
        raise InputError(f'checkpoint file not found: {checkpoint!r}')
    if osp.isdir(checkpoint):
        raise InputError(f'checkpoint {checkpoint!r} is a folder; give the '
                         '.pth file')
    kind = file_kind(checkpoint)
    if kind == 'empty':
        raise InputError(f'checkpoint {checkpoint!r} is an empty file')
    if kind == 'video' or (kind != 'zip' and kind != 'pickle' and str(
            checkpoint).lower().endswith(_VIDEO_EXT)):
        where = ('no checkpoint was given' if video is None else
                 'it is in the place of the checkpoint')
        raise InputError(f'{checkpoint!r} is a video, not a checkpoint '
                         f'({where}); usage: {_USAGE}')


def check_video_file(video: str) -> None:
    """The video exists, is a non-empty file and is not a checkpoint.

    Raises:
        InputError: naming the file.
    """
    if not osp.exists(video):
        raise InputError(f'video not found: {video}')
    if osp.isdir(video):
        raise InputError(f'video {video!r} is a folder; give a video file')
    kind = file_kind(video)
    if kind == 'empty':
        raise InputError(f'cannot read video {video}: the file is empty')
    if kind in ('zip', 'pickle') and str(video).lower().endswith(_CKPT_EXT):
        raise InputError(f'{video!r} is a checkpoint, not a video; usage: '
                         f'{_USAGE}')
    if kind == 'text':
        raise InputError(f'cannot read video {video}: it is a text file, '
                         'not a video')


def check_out_dir(out_dir: str) -> None:
    """``out_dir`` is, or can be created as, a writable folder.

    Raises:
        OutputError: it is a file, a parent is a file, or no permission.
    """
    probe = osp.abspath(out_dir)
    if osp.exists(probe) and not osp.isdir(probe):
        raise OutputError(f'output folder {out_dir} is a file; choose '
                          'another --out-dir')
    while not osp.exists(probe):
        parent = osp.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not osp.isdir(probe):
        raise OutputError(f'cannot create output folder {out_dir}: '
                          f'{probe} is not a folder')
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f'output folder {out_dir} is not writable '
                          f'(no permission on {probe})')


_DEVICE = re.compile(r'^(cpu|cuda|mps|xpu)(:\d+)?$')


def check_device_name(device: str) -> None:
    """A device string torch accepts; ``cuda`` only where a CUDA device
    node exists (the full check, with torch, follows later).

    Raises:
        InputError: not a device name, or no CUDA device on this machine.
    """
    text = str(device).strip()
    if not _DEVICE.match(text):
        raise InputError(f"device {device!r} is not a device name; use "
                         "'cpu', 'cuda' or 'cuda:<index>'")
    if text.startswith('cuda') and not (
            glob.glob('/dev/nvidia[0-9]*') or osp.exists('/dev/dxg') or
            osp.exists('/dev/kfd')):
        raise InputError(f'device {device!r}: CUDA is not available here; '
                         'use --device cpu')


def check_label_map(path: Optional[str],
                    num_classes: Optional[int]) -> Optional[int]:
    """The label map exists and, when the config states the number of
    classes, has one name per class. Returns the number of names.

    Raises:
        InputError: missing, unreadable, empty, or another length.
    """
    if not path:
        return None
    if not osp.isfile(path):
        raise InputError(f'label map not found: {path} (give a text file '
                         'with one class name per line)')
    try:
        with open(path, encoding='utf-8') as f:
            n = sum(1 for line in f if line.strip())
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f'cannot read label map {path}: {_first_line(e)} '
                         '(give a UTF-8 text file, one name per line)') \
            from None
    if n == 0:
        raise InputError(f'label map {path} is empty (one class name per '
                         'line)')
    if num_classes is not None and n != num_classes:
        raise InputError(f'the label map has {n} names but the model has '
                         f'{num_classes} classes; give one name per class, '
                         'one per line')
    return n


def check_target(target: Any, num_classes: Optional[int],
                 label: Optional[int] = None,
                 dataset: bool = False) -> None:
    """``'pred'``, ``'gt'`` (needs a label for a video) or a class index in
    range (when the number of classes is known).

    Raises:
        TargetError: naming the target and what is accepted.
    """
    if isinstance(target, str) and target in ('pred', 'gt'):
        if target == 'gt' and not dataset and (label is None or label < 0):
            raise TargetError("--target gt needs the video's ground-truth "
                              'class: add --label INDEX')
        return
    if isinstance(target, bool) or not isinstance(target, int):
        raise TargetError(f"target {target!r} is not 'pred', 'gt' or a "
                          'class index')
    if target < 0 or (num_classes is not None and target >= num_classes):
        span = f'0..{num_classes - 1}' if num_classes else '>= 0'
        raise TargetError(f'target class {target} is out of range: the '
                          f'model has {num_classes} classes ({span})')


_WORD = re.compile(r'(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])')


def builtin_method_names() -> set:
    """Every name the CLI accepts for mmxai's own explainers, read from
    the sources (no import): the registered class names and, by
    ``explainers/builder.py``'s naming rule, their method names and
    ``METHOD_ALIASES`` (a test checks this equals the registry's)."""
    import ast
    root = osp.join(osp.dirname(osp.abspath(__file__)), 'explainers')
    aliases: dict = {}
    with open(osp.join(root, 'builder.py'), encoding='utf-8') as f:
        for node in ast.parse(f.read()).body:
            target = getattr(node, 'target', None) or (
                node.targets[0] if isinstance(node, ast.Assign) else None)
            if getattr(target, 'id', None) == 'METHOD_ALIASES':
                aliases = ast.literal_eval(node.value)
    names = set()
    for dp, _, files in os.walk(root):
        for fn in files:
            if not fn.endswith('.py'):
                continue
            with open(osp.join(dp, fn), encoding='utf-8') as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if not isinstance(node, ast.ClassDef) or not any(
                        'register_module' in ast.unparse(d)
                        for d in node.decorator_list):
                    continue
                own = [b.value.value for b in node.body
                       if isinstance(b, ast.Assign) and
                       getattr(b.targets[0], 'id', None) == 'name' and
                       isinstance(b.value, ast.Constant)]
                names.add(node.name)
                names.update(own or aliases.get(
                    node.name, (_WORD.sub('_', node.name).lower(), )))
    return names


def check_method_name(method: str, cfg) -> None:
    """An unknown method name, when the config imports no module that
    could register others (``custom_imports`` other than mmxai's).

    Raises:
        ConfigError: naming the method, a did-you-mean and the list.
    """
    imports = (cfg.get('custom_imports') or {}).get('imports') or []
    imports = [imports] if isinstance(imports, str) else list(imports)
    if any(not str(m).split('.')[0] == 'mmxai' for m in imports):
        return  # a plugin may register more methods: checked after import
    name = str(method)
    name = name[len('mmxai.'):] if name.startswith('mmxai.') else name
    known = builtin_method_names()
    lower = {n.lower() for n in known}
    if name in known or name.lower() in lower:
        return
    shown = sorted(n for n in known if n == n.lower())
    near = difflib.get_close_matches(name.lower(), shown, n=1)
    hint = f" (did you mean '{near[0]}'?)" if near else ''
    raise ConfigError(f"unknown method '{method}'{hint}; available: "
                      f"{', '.join(shown)}")


def check_annotation_file(cfg, split: str = 'test') -> None:
    """The ``<split>_dataloader`` dataset's annotation file exists and is
    not empty (MMEngine joins a relative ``ann_file`` to ``data_root``).

    Raises:
        ConfigError: no such dataloader.
        InputError: the annotation file is missing or empty.
    """
    loader = cfg.get(f'{split}_dataloader')
    if not isinstance(loader, dict):
        raise ConfigError(f'config has no {split}_dataloader')
    ds = loader.get('dataset')
    while isinstance(ds, dict) and isinstance(ds.get('dataset'), dict):
        ds = ds['dataset']  # wrappers (RepeatDataset, ...)
    if not isinstance(ds, dict):
        return
    ann = ds.get('ann_file')
    if not isinstance(ann, str) or not ann:
        return
    root = ds.get('data_root')
    path = ann if osp.isabs(ann) or not root else osp.join(root, ann)
    if '://' in path:
        return
    if not osp.isfile(path):
        raise InputError(
            f'annotation file not found: {path} ({split}_dataloader.dataset'
            '.ann_file); fix the path in the config or with --cfg-options '
            f'{split}_dataloader.dataset.ann_file=...')
    if osp.getsize(path) == 0:
        raise InputError(f'annotation file {path} is empty '
                         f'({split}_dataloader.dataset.ann_file)')


# ------------------------------------------------------------ long videos
_TIME = re.compile(r'^\s*(\d+(?:\.\d*)?|\.\d+)\s*(f|s|m|h)?\s*$', re.I)


def parse_time_spec(text: Any, what: str = '--stride') -> tuple:
    """``'2s'``, ``'2.5'`` (seconds), ``'48f'`` (frames), ``'1m'``,
    ``'0.5h'``, or ``'1:02:03'`` -> ``(value, unit)`` with unit ``'f'`` or
    ``'s'``.

    Raises:
        InputError: naming the option and the forms accepted.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text), 's'
    s = str(text).strip()
    if ':' in s:
        try:
            parts = [float(p) for p in s.split(':')]
        except ValueError:
            parts = None
        if parts and len(parts) <= 3 and all(p >= 0 for p in parts):
            sec = 0.0
            for p in parts:
                sec = sec * 60 + p
            return sec, 's'
    m = _TIME.match(s)
    if not m:
        raise InputError(f'{what} {s!r} is not a time: give seconds (2, '
                         "2.5s), frames (48f), minutes (1m) or h:mm:ss")
    value, unit = float(m.group(1)), (m.group(2) or 's').lower()
    if unit == 'f' and value != int(value):
        raise InputError(f'{what} {s!r}: a number of frames is whole')
    scale = dict(s=1.0, m=60.0, h=3600.0, f=1.0)[unit]
    return value * scale, 'f' if unit == 'f' else 's'


def to_frames(spec: Optional[tuple], fps: float) -> Optional[int]:
    """A parsed time spec in frames of a video at ``fps``."""
    if spec is None:
        return None
    value, unit = spec
    return int(round(value if unit == 'f' else value * fps))


#: Cholec80's phase annotations are at 25 fps.
CHOLEC80_FPS = 25.0
_FRAME_COLS = ('frame', 'frames', 'frame_index', 'index')
_TIME_COLS = ('time', 'seconds', 'second', 'sec', 's', 't', 'timestamp')
_LABEL_COLS = ('label', 'phase', 'class', 'action', 'name')


def read_ground_truth(path: str) -> dict:
    """Per-frame labels of a long video, as written.

    Formats: Cholec80's phase files (``Frame<TAB>Phase`` header, one line
    per frame at 25 fps), or a CSV with a header naming a frame or time
    column and a label column (``frame,label`` / ``time,label``; rows are
    change points or every frame: a label holds until the next row), or a
    headerless two-column CSV ``frame,label``.

    Returns:
        ``dict(format, unit ('frame' | 's'), fps (Cholec80: 25, else None),
        positions [N] (floats), labels [N] (str), dense (one row per
        frame))``.
    Raises:
        InputError: missing, empty or malformed file, naming the line.
    """
    import csv
    if not osp.isfile(path):
        raise InputError(f'ground-truth file not found: {path} (give '
                         'Cholec80 phase annotations or a frame,label CSV)')
    with open(path, newline='', encoding='utf-8-sig') as f:
        text = f.read()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise InputError(f'ground-truth file {path} is empty')
    head = lines[0]
    if '\t' in head or (',' not in head and len(head.split()) == 2):
        rows = [ln.split('\t') if '\t' in ln else ln.split() for ln in lines]
        fmt, fps = 'cholec80', CHOLEC80_FPS
    else:
        rows = list(csv.reader(lines))
        fmt, fps = 'csv', None
    first = [c.strip().lower() for c in rows[0]]
    unit = 'frame'
    pos_col, lab_col = 0, 1
    header = not _is_number(first[0])
    if header:
        names = first
        pos_col = next((i for i, c in enumerate(names)
                        if c in _FRAME_COLS + _TIME_COLS), None)
        lab_col = next((i for i, c in enumerate(names) if c in _LABEL_COLS),
                       None)
        if pos_col is None or lab_col is None:
            raise InputError(
                f'ground-truth file {path}: header {rows[0]!r} names no '
                'frame/time column and label column; use "frame,label" or '
                '"time,label" (or Cholec80\'s "Frame<TAB>Phase")')
        if names[pos_col] in _TIME_COLS:
            unit = 's'
        rows = rows[1:]
    positions, labels = [], []
    for n, row in enumerate(rows, start=2 if header else 1):
        if len(row) <= max(pos_col, lab_col):
            raise InputError(f'ground-truth file {path}: line {n} has '
                             f'{len(row)} fields, expected a position and '
                             'a label')
        p = row[pos_col].strip()
        if not _is_number(p):
            raise InputError(f'ground-truth file {path}: line {n}: {p!r} is '
                             f'not a {"time" if unit == "s" else "frame"}')
        positions.append(float(p))
        labels.append(row[lab_col].strip())
    if not positions:
        raise InputError(f'ground-truth file {path} has a header but no '
                         'labels')
    if any(b < a for a, b in zip(positions, positions[1:])):
        raise InputError(f'ground-truth file {path}: the rows are not in '
                         'time order')
    steps = [b - a for a, b in zip(positions, positions[1:])]
    dense = unit == 'frame' and all(s == 1 for s in steps)
    return dict(format=fmt, unit=unit, fps=fps, positions=positions,
                labels=labels, dense=dense, path=path)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def check_long_video_options(args) -> None:
    """The long-video flags of the CLI: times parse, batch size >= 1,
    start before end, the ground-truth file reads.

    Raises:
        InputError: one line naming the flag.
    """
    for name in ('stride', 'window_span', 'start', 'end'):
        value = getattr(args, name, None)
        if value is not None:
            parse_time_spec(value, '--' + name.replace('_', '-'))
    if getattr(args, 'batch_size', 1) < 1:
        raise InputError(f'--batch-size {args.batch_size}: give 1 or more')
    start, end = getattr(args, 'start', None), getattr(args, 'end', None)
    if start is not None and end is not None:
        s, e = parse_time_spec(start, '--start'), parse_time_spec(end,
                                                                 '--end')
        if s[1] == e[1] and e[0] <= s[0]:
            raise InputError(f'--end {end} is not after --start {start}')
    if getattr(args, 'gt', None):
        read_ground_truth(args.gt)
    if getattr(args, 'target', None) == 'gt' and not getattr(args, 'gt',
                                                            None):
        raise InputError('--target gt on a long video needs --gt FILE (per '
                         'frame labels)')
