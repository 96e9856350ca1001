"""Progress reporting: a bar on a terminal, plain lines otherwise, silent when quiet or short."""

import io

from jaxfit.cli.progress import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_bar_on_a_terminal():
    out = Terminal()
    p = Progress(1000, out, delay_s=0.0)
    for done in (250, 500, 1000):
        p.update(done)
    p.close()
    text = out.getvalue()
    assert (
        text.count("\r[") == 3 and "1,000/1,000 fits (100.0%)" in text and "fits/s" in text and "ETA" in text
    )
    assert text.endswith("\n")


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    p = Progress(1000, out, delay_s=0.0, every_s=3600)
    for done in (100, 200, 300):
        p.update(done)
    p.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxfit: 100/1,000 fits") and "\r" not in out.getvalue()


def test_quiet_and_short_runs_print_nothing():
    out = Terminal()
    quiet = Progress(10, out, enabled=False, delay_s=0.0)
    quiet.update(10)
    short = Progress(10, out)  # finishes within the first second
    short.update(10)
    short.close()
    assert out.getvalue() == ""


def test_the_rate_counts_from_the_first_chunk_not_the_compile(monkeypatch):
    clock = iter([0.0, 10.0, 10.0, 11.0, 11.0, 11.0])  # start; chunk 1 after a 10 s compile; chunk 2
    monkeypatch.setattr("jaxfit.cli.progress.time.monotonic", lambda: next(clock))
    out = Terminal()
    p = Progress(2000, out, delay_s=0.0)
    p.update(1000)
    assert "compiling" in out.getvalue() and "fits/s" not in out.getvalue()
    p.update(2000)  # 1,000 fits in the 1 s after the first chunk
    assert "1,000 fits/s" in out.getvalue()
