import io

from mmxai.utils.status_line import StatusLine


def test_status_line_text_rate_and_throttle():
    out = io.StringIO()
    bar = StatusLine(4, 'windows', 'windows', stream=out)
    bar.update(1, frames=32, force=True)
    bar.update(2, frames=64)  # within 10 s of the last line: not shown
    bar.update(4, frames=128, skipped=1, force=True)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith('windows 1/4 (25%) ')
    assert 'frames/s' in lines[0] and 'windows/s ETA ' in lines[0]
    assert lines[1].startswith('windows 4/4 (100%) ')
    assert lines[1].endswith('ETA 0m00s')


def test_status_line_without_frames_and_disabled():
    out = io.StringIO()
    StatusLine(10, 'features', 'frames', stream=out).update(5, force=True)
    line = out.getvalue()
    assert line.startswith('features 5/10 (50%) ') and 'frames/s ETA' in line
    assert ' frames/s ' not in line.split('(50%)')[1].split('frames/s')[0]
    out = io.StringIO()
    StatusLine(10, 'x', 'x', enabled=False, stream=out).update(5, force=True)
    StatusLine(0, 'x', 'x', stream=out).update(0, force=True)
    assert out.getvalue() == ''
