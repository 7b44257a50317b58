"""mmxai.fileio: stale staging of dead runs, full disks, atomic writes."""
import errno
import os
import os.path as osp
import subprocess
import sys

import pytest

from mmxai.errors import OutputError
from mmxai.fileio import _owner_tag, atomic_path, clean_stale, staged_dir


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    return proc.pid


def test_stale_staging_of_dead_runs_removed_live_kept(tmp_path):
    host = _owner_tag().split('~')[0]
    dead, live = _dead_pid(), os.getppid()
    stale_dir = tmp_path / f'.mmxai-staging.{host}~{dead}.abc'
    stale_dir.mkdir()
    (stale_dir / '.maps.npz.tmp.npz').write_bytes(b'')
    stale_tmp = tmp_path / f'.explanation.json.{host}~{dead}.x1.tmp.json'
    stale_tmp.write_text('{')
    live_dir = tmp_path / f'.mmxai-staging.{host}~{live}.def'
    live_dir.mkdir()
    other_host = tmp_path / f'.mmxai-staging.otherhost~{dead}.ghi'
    other_host.mkdir()
    with staged_dir(str(tmp_path)) as stage:
        with open(osp.join(stage, 'a.json'), 'w') as f:
            f.write('{}')
    names = sorted(os.listdir(tmp_path))
    assert names == sorted(['a.json', live_dir.name, other_host.name])
    assert clean_stale(str(tmp_path)) == []


def test_full_disk_names_the_file_and_the_space(tmp_path):
    target = tmp_path / 'maps.npz'
    with pytest.raises(OutputError) as e:
        with atomic_path(str(target)) as tmp:
            raise OSError(errno.ENOSPC, 'No space left on device', tmp)
    msg = str(e.value)
    assert msg.startswith('no space left writing ') and 'MB free on' in msg
    assert 'choose another --out-dir' in msg and len(msg.splitlines()) == 1
    assert os.listdir(tmp_path) == []
    with pytest.raises(OutputError, match='no space left writing'):
        with staged_dir(str(tmp_path / 'o')) as stage:
            raise OSError(errno.ENOSPC, 'No space left on device',
                          osp.join(stage, 'overlay.mp4'))
    assert os.listdir(tmp_path / 'o') == []


def test_check_writable_is_the_cli_check(tmp_path):
    from mmxai.fileio import check_writable
    check_writable(tmp_path / 'new' / 'deeper')  # creatable: no error
    assert not (tmp_path / 'new').exists()  # and nothing made
    f = tmp_path / 'file'
    f.write_text('x')
    with pytest.raises(OutputError, match='is a file; choose another'):
        check_writable(f)
    with pytest.raises(OutputError, match='is not a folder'):
        check_writable(f / 'below')


def test_check_writable_agrees_with_preflight(tmp_path):
    """The two copies of the rule (layers forbid one importing the other)
    give the same verdict and message."""
    from mmxai.fileio import check_writable
    from mmxai.preflight import check_out_dir
    f = tmp_path / 'file'
    f.write_text('x')
    for path in (tmp_path / 'a' / 'b', f, f / 'below'):
        got = []
        for check in (check_writable, check_out_dir):
            try:
                check(str(path))
                got.append(None)
            except OutputError as e:
                got.append(str(e))
        assert got[0] == got[1], path
