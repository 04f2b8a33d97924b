"""Tasks for the local pool's tests (tests/test_executors.py), in a module the pool's workers import
quickly: nothing of torch or Lightning."""
import os
import signal
from pathlib import Path


class Writes:
    def __init__(self, name: str, path: str):
        self.name, self.path = name, path

    def __call__(self) -> None:
        print(f"writing {self.path}")
        Path(self.path).write_text(self.name)


class Raises(Writes):
    def __call__(self) -> None:
        raise ValueError(f"{self.name} went wrong\nsecond line")


class Dies(Writes):
    def __call__(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer would
