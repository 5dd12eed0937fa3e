"""core.logs.setup: the role's handler writes to stderr as it is at each record, so a role set up
while stderr was redirected (a test's capture, closed since) does not fail every later record."""

import io
import logging
import sys

from appliance.core import logs


def test_records_go_to_stderr_as_it_is_now_not_as_it_was_at_setup(monkeypatch, capsys):
    redirected = io.StringIO()           # the root logger is put back after the test (conftest)
    monkeypatch.setattr(sys, "stderr", redirected)
    logs.setup("text", logging.INFO)
    logging.getLogger("damocles.test").info("while redirected")
    redirected.close()                 # the capture ends
    monkeypatch.undo()
    logging.getLogger("damocles.test").info("after")
    err = capsys.readouterr().err
    assert "after" in err and "Logging error" not in err
