"""What the CLI's long-running commands share: the container on the running local stack (or on
AWS with --aws), and a progress bar on stderr (stdout keeps the JSON report)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any


def container(aws: bool) -> Any:
    """The composition root's container, on the running local stack unless ``aws``."""
    from meterbill.local import stack

    state = stack.read_state()
    if not os.environ.get("METERBILL_DYNAMODB_ENDPOINT") and state.get("dynamodb_endpoint") and not aws:
        stack.prepare_environment(state["dynamodb_endpoint"])  # the running local stack
    from meterbill.bootstrap import bootstrap

    return bootstrap()


@contextmanager
def progress_bar(labels: Mapping[str, str]) -> Iterator[Callable[[str, int, int], None]]:
    """A ``progress(phase, done, total or 0 when unknown)`` callback drawing one bar per phase."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=Console(stderr=True)) as bar:
        tasks: dict[str, Any] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(labels[phase], total=total or None)
            bar.update(tasks[phase], completed=done, total=total or None)

        yield progress
