"""A bounded pool of worker threads for one model, and how much work it holds."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable


class WorkerPool:
    """Runs a model's blocking calls off the event loop; `depth` counts the calls
    waiting for a worker or running (the metrics' queue depth)."""

    def __init__(self, workers: int, name: str):
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self.depth = 0

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        self.depth += 1
        try:
            return await loop.run_in_executor(self._pool, fn, *args)
        finally:
            self.depth -= 1

    def close(self) -> None:
        """Stop taking work; what is queued is dropped."""
        self._pool.shutdown(wait=False, cancel_futures=True)
