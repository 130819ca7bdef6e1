"""Ctrl-C during training: finish the step, save a checkpoint, stop (a second Ctrl-C stops at once)."""

from __future__ import annotations


class Interrupted(Exception):
    """Training stopped by Ctrl-C (SIGINT) between two steps, after saving a checkpoint."""

    def __init__(self, step: int, checkpoint: str):
        super().__init__(f"interrupted at step {step}")
        self.step, self.checkpoint = step, checkpoint


class StopOnInterrupt:
    """First Ctrl-C: finish the current step, save, stop. Second Ctrl-C: stop at once."""

    def __enter__(self):
        import signal
        import threading

        self.requested = False
        self._old = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.getsignal(signal.SIGINT)

            def handler(signum, frame):
                if self.requested:
                    raise KeyboardInterrupt
                self.requested = True

            signal.signal(signal.SIGINT, handler)
        return self

    def __exit__(self, *exc):
        import signal

        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False
