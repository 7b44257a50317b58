"""mmxai.preflight: the input checks the CLI runs before heavy imports."""
import os
import socket

import mmengine
import pytest

from mmxai.errors import ConfigError, InputError, OutputError, TargetError
from mmxai import preflight as pre


def _cfg(tmp_path, text="model = dict(cls_head=dict(num_classes=4, "
         "in_channels=8), backbone=dict(depth=50))\nx = [1, 2]\n"):
    path = tmp_path / 'c.py'
    path.write_text(text)
    return str(path)


def test_config_parse_errors_are_config_errors(tmp_path):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('a: [b\n')
    with pytest.raises(ConfigError, match='bad.yaml.*ParserError'):
        pre.load_config(str(bad))
    raising = tmp_path / 'r.py'
    raising.write_text('raise RuntimeError("boom")\n')
    with pytest.raises(ConfigError, match='RuntimeError: boom; fix the file'):
        pre.load_config(str(raising))
    with pytest.raises(InputError, match='config file not found'):
        pre.load_config(str(tmp_path / 'none.py'))


def test_custom_imports_deferred_until_given_the_config(tmp_path):
    path = _cfg(tmp_path, "custom_imports = dict(imports=['no_such_mod_x'], "
                "allow_failed_imports=False)\nmodel = dict()\n")
    cfg = pre.load_config(path)  # not imported while reading the file
    with pytest.raises(ConfigError, match='no_such_mod_x'):
        pre.load_config(cfg)  # the API path imports them


@pytest.mark.parametrize('options,text', [
    ({'modle.cls_head.num_classes': 3}, "no 'modle' (did you mean 'model'?)"),
    ({'model.cls_head.num_classes': 'abc'}, 'expected a number like 4'),
    ({'model.cls_head.num_classes.x': 1}, "'model.cls_head.num_classes' is 4"),
    ({'model.backbone': 5}, 'expected a dict'),
    ({'x.5': 1}, "'x' has 2 items"),
    ({'x.1': 1}, 'give the whole list: x=[...]'),
])
def test_cfg_options_refused(tmp_path, options, text):
    with pytest.raises(ConfigError, match='--cfg-options') as e:
        pre.load_config(_cfg(tmp_path), options)
    assert text in str(e.value)


def test_cfg_options_accepted(tmp_path):
    cfg = pre.load_config(_cfg(tmp_path), {
        'model.cls_head.num_classes': 7, 'model.cls_head.dropout': 0.5,
        'model.test_cfg.max_testing_views': 2, 'x': [9],
        'model.cls_head.in_channels': 2.0})
    assert cfg.model.cls_head.num_classes == 7
    assert cfg.model.test_cfg.max_testing_views == 2
    assert pre.config_num_classes(cfg) == 7


def test_file_kinds(tmp_path, files_on_disk):
    assert pre.file_kind(files_on_disk['video']) == 'video'
    assert pre.file_kind(files_on_disk['ckpt']) == 'zip'
    (tmp_path / 't').write_text('\x1b[31mred\x1b[0m text')
    assert pre.file_kind(str(tmp_path / 't')) == 'text'
    (tmp_path / 'e').write_bytes(b'')
    assert pre.file_kind(str(tmp_path / 'e')) == 'empty'


def test_video_and_checkpoint_swapped_or_missing(tmp_path, files_on_disk):
    video, ckpt = files_on_disk['video'], files_on_disk['ckpt']
    with pytest.raises(InputError, match='is a video, not a checkpoint '
                       r'\(no checkpoint was given\); usage'):
        pre.check_checkpoint_file(video, None)
    with pytest.raises(InputError, match='in the place of the checkpoint'):
        pre.check_checkpoint_file(video, ckpt)
    with pytest.raises(InputError, match='is a checkpoint, not a video'):
        pre.check_video_file(ckpt)
    (tmp_path / 'fake.mp4').write_text('\x1b[2Jhello')
    with pytest.raises(InputError, match='it is a text file, not a video'):
        pre.check_video_file(str(tmp_path / 'fake.mp4'))
    with pytest.raises(InputError, match='is a folder'):
        pre.check_video_file(str(tmp_path))
    pre.check_checkpoint_file('https://example.com/x.pth', video)  # later
    pre.check_checkpoint_file(ckpt, video)
    pre.check_video_file(video)


def test_out_dir_device_label_map_target(tmp_path):
    f = tmp_path / 'file'
    f.write_text('x')
    with pytest.raises(OutputError, match='is a file'):
        pre.check_out_dir(str(f))
    with pytest.raises(OutputError, match='not a folder'):
        pre.check_out_dir(str(f / 'sub'))
    for bad in ('gpu', 'cuda:x', ''):
        with pytest.raises(InputError, match='is not a device name'):
            pre.check_device_name(bad)
    pre.check_device_name('cpu')
    labels = tmp_path / 'l.txt'
    labels.write_text('a\nb\n\n')
    assert pre.check_label_map(str(labels), 2) == 2
    with pytest.raises(InputError, match='has 2 names but the model has 3'):
        pre.check_label_map(str(labels), 3)
    (tmp_path / 'e.txt').write_text('\n')
    with pytest.raises(InputError, match='is empty'):
        pre.check_label_map(str(tmp_path / 'e.txt'), None)
    with pytest.raises(TargetError, match='out of range'):
        pre.check_target(4, 4)
    with pytest.raises(TargetError, match='out of range'):
        pre.check_target(-1, None)
    with pytest.raises(TargetError, match='ground-truth'):
        pre.check_target('gt', 4, label=-1)
    with pytest.raises(TargetError, match="is not 'pred', 'gt'"):
        pre.check_target('best', 4)
    pre.check_target('gt', 4, dataset=True)
    pre.check_target(3, 4)


def test_annotation_file(tmp_path):
    cfg = mmengine.Config(dict(test_dataloader=dict(dataset=dict(
        ann_file='ann.txt', data_root=str(tmp_path)))))
    with pytest.raises(InputError, match='annotation file not found'):
        pre.check_annotation_file(cfg)
    (tmp_path / 'ann.txt').write_text('')
    with pytest.raises(InputError, match='is empty'):
        pre.check_annotation_file(cfg)
    (tmp_path / 'ann.txt').write_text('a.mp4 0\n')
    pre.check_annotation_file(cfg)
    with pytest.raises(ConfigError, match='no val_dataloader'):
        pre.check_annotation_file(cfg, 'val')


@pytest.fixture(scope='module')
def files_on_disk(tmp_path_factory):
    from tiny_models import build, i3d_cfg, write_checkpoint, write_video_file
    d = tmp_path_factory.mktemp('pre')
    return dict(video=str(write_video_file(d / 'clip.mp4')),
                ckpt=str(write_checkpoint(d / 'm.pth', build(i3d_cfg()))))


def test_host_tag_in_temp_names():
    from mmxai.fileio import _owner_tag
    assert _owner_tag().endswith(f'~{os.getpid()}')
    assert '.' not in _owner_tag()
    assert socket.gethostname()


def test_builtin_method_names_equal_the_registry():
    """The names read from the sources (no import) are the registry's."""
    from mmxai.explainers import method_names
    from mmxai.registry import EXPLAINERS
    test_only = {n for n, c in EXPLAINERS.module_dict.items()
                 if not c.__module__.startswith('mmxai.')}
    names = set(method_names()) | set(EXPLAINERS.module_dict)
    names -= test_only | {getattr(EXPLAINERS.module_dict[n], 'name', n)
                          for n in test_only}
    assert pre.builtin_method_names() == names


def test_unknown_method_before_imports(tmp_path):
    cfg = mmengine.Config(dict(custom_imports=dict(imports=['mmxai'])))
    with pytest.raises(ConfigError, match="unknown method 'gradcm' \\(did "
                       "you mean 'gradcam'\\?\\); available: "):
        pre.check_method_name('gradcm', cfg)
    for ok in ('gradcam', 'GradCAM', 'mmxai.GradCAM', 'gradcam++'):
        pre.check_method_name(ok, cfg)
    plugin = mmengine.Config(dict(custom_imports=dict(imports=['my_pkg'])))
    pre.check_method_name('my_method', plugin)  # checked after the import
