"""The progress bar: shown after its delay, never with MMXAI_NO_PROGRESS=1
(the CLIs' --no-progress / --quiet), unless forced on."""
from mmxai.explainers.progress import Progress


def _run(**kwargs):
    with Progress(3, desc='x', delay=0.0, **kwargs) as bar:
        for _ in range(3):
            bar.update()


def test_progress_shown_and_silenced(capsys, monkeypatch):
    monkeypatch.delenv('MMXAI_NO_PROGRESS', raising=False)
    _run()
    assert '3/3' in capsys.readouterr().err
    monkeypatch.setenv('MMXAI_NO_PROGRESS', '1')
    _run()
    assert capsys.readouterr().err == ''
    _run(enabled=True)  # an explicit request still wins
    assert '3/3' in capsys.readouterr().err
