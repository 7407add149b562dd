"""Fault injection for tests/test_faults.py, loaded by rule scripts through PYTHONPATH.

A fault must strike a job midway, after some of its batches are saved and before the
last one. Watching from outside races a fast job; so the job itself acts right after
saving its N-th part: I2PEVAL_FAULT="<script>:<parts>:kill" sends itself SIGKILL (the
job dies as under the OOM killer or a power loss), "<script>:<parts>:hang" sleeps so
that the test can interrupt the whole run while the job is midway.
"""

import os
import signal
import sys
import time

FAULT = os.environ.get("I2PEVAL_FAULT", "")

if FAULT:
    script, after_parts, action = FAULT.split(":")
    if sys.argv and sys.argv[0].endswith(f".{script}"):
        from i2peval.parts import JobParts

        save_part = JobParts.add

        def add_then_fault(self, rows):
            save_part(self, rows)
            add_then_fault.saved += 1
            if add_then_fault.saved == int(after_parts):
                if action == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                time.sleep(3600)

        add_then_fault.saved = 0
        JobParts.add = add_then_fault
