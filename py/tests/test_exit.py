"""A process that exits while its handlers and log forwarding are busy exits cleanly.

The extension's dispatcher and log threads must be off the interpreter before it finalizes;
a thread still attached when finalization starts makes CPython abort ("Fatal Python error:
PyGILState_Release ... finalizing"), which the fault matrix saw in about 3 of 100 runs. That race
is too rare to reproduce on demand; this test drives the exit path it depends on (the atexit gate
in py/src/exit.rs) under load: the child exits in the middle of a burst of routed messages, with
DEBUG logging forwarded, a dozen times over, and must exit with status 0 each time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any

from edgemodule import Message, ModuleClient

CHILD = textwrap.dedent(
    """
    import logging, sys, threading, edgemodule
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    edgemodule.set_log_level(logging.DEBUG)
    handled = threading.Event()
    count = [0]
    def on_message(msg):
        count[0] += 1
        sum(range(2000))  # a little Python work per message, so exit lands inside a batch
        if count[0] == 50:
            handled.set()
    client = edgemodule.ModuleClient.create_from_connection_string(sys.argv[1], sys.argv[2], **eval(sys.argv[3]))
    client.on_message("in1", on_message)
    if not handled.wait(30):
        sys.exit(3)
    print("exiting", count[0], flush=True)
    # No shutdown(): the interpreter exits with the client connected and messages arriving.
    """
)


def test_exit_while_handlers_and_logging_are_busy_is_clean(hub: Any) -> None:
    opts = hub.options()
    with ModuleClient.create_from_connection_string(hub.connection_string("sender"), hub.ca_pem, **opts) as sender:
        for run in range(12):
            sender.send_messages_to_output([Message(f"{run}-{i}") for i in range(400)], "out1")
            child = subprocess.run(
                [sys.executable, "-c", CHILD, hub.connection_string("receiver"), hub.ca_pem, repr(opts)],
                capture_output=True,
                timeout=60,
                env=dict(os.environ),
            )
            assert child.returncode == 0, (run, child.returncode, child.stderr.decode()[-2000:])
            assert b"exiting" in child.stdout
            assert b"Fatal Python error" not in child.stderr
