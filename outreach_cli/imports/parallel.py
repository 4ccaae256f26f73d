"""Checking the rows of a big import on every core (issue 13).

Phase 1 of an import (each row validated and normalised: phone numbers parsed, emails checked,
dates and amounts read) is pure and costs most of the import's time: a million patients spend
about two thirds of theirs in `phonenumbers` and `email-validator`. A file of more than one
batch is therefore checked by a pool of worker processes while this process reads the file and
stages the rows. Order is kept (batches are yielded in file order, each after its problems were
reported), and memory stays bounded: at most one batch per worker, and one more, is in flight.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import islice
from typing import Any

from outreach_cli.imports.readers import ErrorSink, Record

StagedRow = tuple[Any, ...]
RowCheck = Callable[[Record, ErrorSink], StagedRow | None]  # a staged row, or None (problems appended)
BatchResult = tuple[list[StagedRow], list[str]]

BATCH = 5000  # rows per batch (the importer passes its staging page size)
MAX_WORKERS = 4


def default_workers() -> int:
    """One worker per core this process may run on (capped): with one core there is no pool."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return min(cores, MAX_WORKERS)


def check_batch(check: RowCheck, records: list[Record]) -> BatchResult:
    """The staged rows of one batch and its problems (run in a worker, or here)."""
    problems: list[str] = []
    rows = []
    for rec in records:
        row = check(rec, problems)
        if row is not None:
            rows.append(row)
    return rows, problems


def checked_batches(
    records: Iterator[Record],
    check: RowCheck,
    errs: ErrorSink,
    *,
    workers: int | None = None,
    batch: int = BATCH,
) -> Iterator[list[StagedRow]]:
    """The staged rows of ``records``, a batch at a time in file order; each batch's problems are
    appended to ``errs`` before the batch is yielded. ``check`` must be picklable (a module-level
    function or a frozen dataclass instance) when the pool is used."""
    n = default_workers() if workers is None else workers
    chunk = list(islice(records, batch))
    if n < 2 or len(chunk) < batch:  # a small file (or one core): no processes to start
        while chunk:
            yield _reported(check_batch(check, chunk), errs)
            chunk = list(islice(records, batch))
        return
    # spawn, not fork: the caller holds database connections and may run threads. The workers are
    # this process's own children, joined at the end, so its CPU time (as `time` reports it)
    # includes theirs.
    pool = ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"))
    try:
        pending: deque[Future[BatchResult]] = deque()
        while chunk or pending:
            while chunk and len(pending) <= n:
                pending.append(pool.submit(check_batch, check, chunk))
                chunk = list(islice(records, batch))
            yield _reported(pending.popleft().result(), errs)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _reported(result: BatchResult, errs: ErrorSink) -> list[StagedRow]:
    rows, problems = result
    for p in problems:
        errs.append(p)
    return rows
