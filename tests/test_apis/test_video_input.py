"""Untrusted videos: decompression limits, native decoder output, short
videos (mmxai.apis.video_input)."""
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
from mmengine.config import Config

from mmxai.apis import explain_video
from mmxai.apis.video_input import (MAX_FRAME_PIXELS, load_video_sample,
                                    sampling_report)
from mmxai.errors import InputError
from mmxai.utils.native_stderr import captured_native_stderr, sanitize_text
from tiny_models import (TEST_PIPELINE_3D, build, i3d_cfg, write_checkpoint,
                         write_config, write_video_file)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
#: A 5 KB VP9 file of one 8192 x 8192 frame (made with cv2.VideoWriter).
BOMB = osp.join(osp.dirname(osp.abspath(__file__)), 'data',
                'bomb_8192x8192.webm')
CFG = Config(dict(test_pipeline=TEST_PIPELINE_3D))
ESC_TEXT = b'hello \x1b[31mRED\x1b[0m \x1b]0;pwned\x07 \x1b[2J world\n'


@pytest.fixture(autouse=True)
def _no_limits_from_env(monkeypatch):
    for k in ('MMXAI_MAX_FRAME_PIXELS', 'MMXAI_MAX_VIDEO_PIXELS',
              'MMXAI_VERBOSE'):
        monkeypatch.delenv(k, raising=False)


def test_tiny_file_with_huge_frames_refused_before_decoding():
    assert osp.getsize(BOMB) < 16 * 1024
    assert 7680 * 4320 <= MAX_FRAME_PIXELS < 8192 * 8192  # 8K UHD passes
    with pytest.raises(InputError) as e:
        load_video_sample(BOMB, CFG)
    msg = str(e.value)
    assert '\n' not in msg
    assert 'bomb_8192x8192.webm' in msg and '8192x8192' in msg
    assert 'KB on disk' in msg and 'MMXAI_MAX_FRAME_PIXELS=67108864' in msg


def test_frame_limit_env_override(tmp_path, monkeypatch):
    video = write_video_file(tmp_path / 'v.mp4')  # 56 x 40
    monkeypatch.setenv('MMXAI_MAX_FRAME_PIXELS', '56x39')
    with pytest.raises(InputError, match='MMXAI_MAX_FRAME_PIXELS=2240'):
        load_video_sample(video, CFG)
    monkeypatch.setenv('MMXAI_MAX_FRAME_PIXELS', '2240')
    assert load_video_sample(video, CFG).original_shape == (40, 56)
    monkeypatch.setenv('MMXAI_MAX_FRAME_PIXELS', 'lots')
    with pytest.raises(InputError, match='not a number of pixels'):
        load_video_sample(video, CFG)


def test_decode_budget_counts_the_frames_the_pipeline_samples(tmp_path,
                                                              monkeypatch):
    video = write_video_file(tmp_path / 'v.mp4')
    # 8 frames of 56 x 40 are sampled: 17920 pixels decoded at once
    with pytest.raises(InputError) as e:
        load_video_sample(video, CFG, max_video_pixels=17919)
    assert 'decode 8 frames of 56x40' in str(e.value)
    assert 'MMXAI_MAX_VIDEO_PIXELS=17920' in str(e.value)
    assert load_video_sample(video, CFG, max_video_pixels=17920)
    monkeypatch.setenv('MMXAI_MAX_VIDEO_PIXELS', '100')
    with pytest.raises(InputError, match='MMXAI_MAX_VIDEO_PIXELS'):
        load_video_sample(video, CFG)
    monkeypatch.setenv('MMXAI_MAX_VIDEO_PIXELS', '0')  # no limit
    sample = load_video_sample(video, CFG)
    assert sample.fps == pytest.approx(10)  # the video's own frame rate


def test_sanitize_text_escapes_control_characters():
    out = sanitize_text(ESC_TEXT + b'\r\n\x00\xff' + 'é\u202e'.encode())
    assert '\x1b' not in out and '\x07' not in out and '\x00' not in out
    assert '\\x1b[31mRED' in out and '\n' not in out and 'é' in out
    assert '\\u202e' in out  # right-to-left override is not printable
    assert sanitize_text('x' * 500, 20) == 'x' * 17 + '...'


def test_native_stderr_is_captured():
    with captured_native_stderr() as log:
        os.write(2, b'native \x1b[31m message\n')
        assert 'native' in log.summary()
    assert 'native' in log.text and log.lines == ['native \\x1b[31m message']


def _assert_safe(stderr: bytes, pattern: str):
    assert b'\x1b' not in stderr and b'\x07' not in stderr, stderr
    lines = [l for l in stderr.decode().splitlines()
             if l.startswith('error: ')]
    assert len(lines) == 1 and pattern in lines[0], stderr
    assert 'hello' not in stderr.decode().replace(lines[0], '')  # not raw


def test_text_posing_as_video_never_reaches_the_terminal_raw(tmp_path):
    fake = tmp_path / 'fake.mp4'
    fake.write_bytes(ESC_TEXT * 3)
    code = ('import sys; sys.path.insert(0, "tests")\n'
            'from mmengine.config import Config\n'
            'from mmxai.apis.video_input import load_video_sample\n'
            'from tiny_models import TEST_PIPELINE_3D\n'
            'try:\n'
            '    load_video_sample(sys.argv[1], '
            'Config(dict(test_pipeline=TEST_PIPELINE_3D)))\n'
            'except Exception as e:\n'
            '    print(f"error: {e}", file=sys.stderr); sys.exit(2)\n')
    proc = subprocess.run([sys.executable, '-c', code, str(fake)],
                          capture_output=True, cwd=ROOT)
    assert proc.returncode == 2
    _assert_safe(proc.stderr, 'cannot read video')
    # the decoder's words are kept, the file's bytes it quotes are not
    err = proc.stderr.decode()
    assert 'ERROR opening the input: Invalid data' in err
    assert 'RED' not in err


def test_binary_junk_bytes_are_not_quoted(tmp_path):
    junk = tmp_path / 'junk.mp4'
    rng = np.random.default_rng(0)
    junk.write_bytes(bytes(rng.integers(0, 256, 3000, dtype=np.uint8)) +
                     b'\n, Xy\x1b[2J' + bytes(rng.integers(0, 256, 500,
                                                          dtype=np.uint8)))
    with pytest.raises(Exception) as e:
        load_video_sample(str(junk), Config(dict(
            test_pipeline=TEST_PIPELINE_3D)))
    msg = str(e.value)
    assert 'decoder: ERROR opening the input: Invalid data' in msg, msg
    assert len(msg) < 300 and '\ufffd' not in msg and '\x1b' not in msg


def test_short_video_repeats_are_reported(tmp_path, capsys):
    video = write_video_file(tmp_path / 'short.mp4', frames=6)
    model = build(i3d_cfg())
    cfg = write_config(tmp_path / 'cfg.py')
    ckpt = write_checkpoint(tmp_path / 'm.pth', model)
    capsys.readouterr()
    res = explain_video(cfg, video, checkpoint=ckpt,
                        out_dir=str(tmp_path / 'o'), outputs=('json', ))
    err = capsys.readouterr().err
    warn = [l for l in err.splitlines() if l.startswith('warning: ')]
    # clip_len 8, frame_interval 2: 15 frames needed, 6 there, looped
    assert len(warn) == 1 and 'has 6 frames' in warn[0], err
    assert '5 of the 8 sampled frames are repeats' in warn[0]
    rec = json.load(open(tmp_path / 'o' / 'explanation.json'))
    assert rec['settings']['sampling'] == dict(
        video_frames=6, frames_needed=15, frames_sampled=8,
        frames_repeated=5, clip_len=8)
    assert res.sample.warnings == [warn[0][len('warning: '):]]


def test_long_enough_video_has_no_repeats(tmp_path, capsys):
    video = write_video_file(tmp_path / 'v.mp4', frames=20)
    sample = load_video_sample(video, CFG)
    assert sample.sampling['frames_repeated'] == 0 and not sample.warnings
    assert 'warning' not in capsys.readouterr().err


def test_sampling_report_segments_and_clips():
    # TSN: 25 segments of one frame from a 12-frame video
    inds = (np.arange(25) * 12 // 25)
    rep = sampling_report(inds, 1, 1, 12)
    assert rep['frames_needed'] == 25 and rep['frames_repeated'] == 13
    # two overlapping clips of a long video: overlap is not repetition
    inds = np.concatenate([np.arange(8), np.arange(4, 12)])
    assert sampling_report(inds, 8, 1, 12)['frames_repeated'] == 0
