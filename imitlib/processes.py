"""Child processes that never outlive the study: die with their parent, stop politely, then by force."""

from __future__ import annotations

import signal
import subprocess
import sys


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies, even by SIGKILL (Linux only).

    Call it in the child: as a ``subprocess.Popen(preexec_fn=...)`` or a process-pool initializer.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, sig)


def stop_process(process: subprocess.Popen, timeout_s: float = 20.0) -> None:
    """Terminate a child process, kill it if it has not exited after ``timeout_s``, and reap it."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
