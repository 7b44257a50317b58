"""Native (file descriptor 2) stderr capture and safe display of untrusted text.

Video decoders (decord, FFmpeg, OpenCV) write their messages straight to
file descriptor 2 from C code, bypassing ``sys.stderr``; decord even echoes
the bytes of a file it cannot open (``ERROR opening: <file contents>``),
escape sequences included. :func:`captured_native_stderr` redirects fd 2
into a temporary file while such code runs and keeps what was written, so
it never reaches the terminal raw: it is logged at debug level (logger
``mmxai.decoder``), re-emitted sanitised when ``MMXAI_VERBOSE=1``, and
quoted sanitised (:func:`sanitize_text`) in error messages.

The redirection is process-wide while it lasts (other threads' stderr is
captured too) and nests.
"""
import contextlib
import logging
import os
import re
import sys
import tempfile
import unicodedata
from typing import Iterator

__all__ = ['CapturedStderr', 'captured_native_stderr', 'sanitize_text',
           'verbose']

logger = logging.getLogger('mmxai.decoder')
#: Prefixes of native log lines that carry no information for a user:
#: glog's ``[12:00:00] /src/file.cc:83: `` and FFmpeg's ``[mov,mp4 @ 0x..] ``.
_NOISE = re.compile(r'^(\[\d\d:\d\d:\d\d\] \S+:\d+: |\[[^\]]* @ 0x[0-9a-f]+\] )')


#: decord's ``ERROR opening: <what it was given>, <reason>``.
_QUOTED_INPUT = re.compile(r'ERROR opening: .*, (?=[A-Z][a-z])', re.S)


def verbose() -> bool:
    """``MMXAI_VERBOSE`` is set to something other than ``''``/``0``."""
    return os.environ.get('MMXAI_VERBOSE', '').strip() not in ('', '0')


def sanitize_text(text, limit: int = 160, one_line: bool = True) -> str:
    """Untrusted text (bytes or str) made safe to print.

    Control characters (ESC, BEL, CR, ...) and other non-printable code
    points become ``\\xNN`` / ``\\uNNNN`` escapes, so no terminal sequence
    survives; with ``one_line`` runs of whitespace and line breaks become
    one space (else newlines are kept). Longer results are cut to ``limit``
    characters (``0``: no limit) and end with ``...``.
    """
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode('utf-8', 'replace')
    text = str(text)
    out = []
    for ch in text:
        if ch == '\n' and not one_line:
            out.append(ch)
        elif ch in ' \t\n\r\f\v' and one_line:
            if not out or out[-1] != ' ':
                out.append(' ')
        elif ch.isprintable() and unicodedata.category(ch) not in (
                'Cc', 'Cf', 'Zl', 'Zp'):
            out.append(ch)
        elif ch == '\t':
            out.append(' ')
        else:
            code = ord(ch)
            out.append(f'\\x{code:02x}' if code < 0x100 else
                       f'\\u{code:04x}' if code < 0x10000 else
                       f'\\U{code:08x}')
    result = ''.join(out).strip() if one_line else ''.join(out)
    if limit and len(result) > limit:
        result = result[:max(0, limit - 3)].rstrip() + '...'
    return result


class CapturedStderr:
    """What native code wrote to fd 2 inside :func:`captured_native_stderr`
    (``text``: raw, decoded as UTF-8 with replacement; set on exit)."""

    def __init__(self):
        self.text = ''
        self._fd = None

    def so_far(self) -> str:
        """What was written so far (inside the block; ``text`` after)."""
        if self._fd is None:
            return self.text
        try:
            return os.pread(self._fd, 1 << 20, 0).decode('utf-8', 'replace')
        except OSError:
            return ''

    @property
    def lines(self):
        """The non-empty lines, sanitised."""
        return [s for s in (sanitize_text(line, 0) for line in
                            self.text.splitlines()) if s]

    def summary(self, limit: int = 160) -> str:
        """One sanitised line of what the decoder said so far ('' if
        nothing)."""
        # decord quotes what it was asked to open, which for the toolbox's
        # in-memory reads is the file's own bytes: never repeat them
        text = _QUOTED_INPUT.sub('ERROR opening the input: ', self.so_far())
        lines = [_NOISE.sub('', line.strip()) for line in text.splitlines()]
        return sanitize_text(' | '.join(s for s in lines if s), limit)

    def __bool__(self) -> bool:
        return bool(self.text.strip())


@contextlib.contextmanager
def captured_native_stderr(label: str = 'decoder'
                           ) -> Iterator[CapturedStderr]:
    """Redirect file descriptor 2 to a temporary file while the block runs.

    Yields a :class:`CapturedStderr` whose ``text`` is filled on exit
    (also when the block raises). The text is logged at debug level and,
    under ``MMXAI_VERBOSE=1``, written to stderr sanitised, one
    ``[<label>] ...`` line per line. Where fd 2 cannot be redirected the
    block runs uncaptured.
    """
    captured = CapturedStderr()
    try:
        sys.stderr.flush()
    except Exception:  # a closed or odd stderr
        pass
    try:
        saved = os.dup(2)
    except OSError:
        yield captured
        return
    tmp = tempfile.TemporaryFile()
    try:
        os.dup2(tmp.fileno(), 2)
        captured._fd = tmp.fileno()
        try:
            yield captured
        finally:
            try:
                sys.stderr.flush()
            except Exception:
                pass
            os.dup2(saved, 2)
            captured._fd = None
            tmp.seek(0)
            captured.text = tmp.read(1 << 20).decode('utf-8', 'replace')
    finally:
        os.close(saved)
        tmp.close()
    if captured:
        for line in captured.lines:
            logger.debug('%s: %s', label, line)
        if verbose():
            for line in captured.lines:
                print(f'[{label}] {sanitize_text(line, 500)}',
                      file=sys.stderr)
