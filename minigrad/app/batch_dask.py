"""The batch runner's tasks on Dask's distributed scheduler (``pip install "minigrad[cluster]"``).

Imported only for ``--workers N`` (N > 1: a local cluster of N worker processes) or
``--scheduler tcp://HOST:8786`` (an existing cluster: ``dask scheduler`` + ``dask worker``
processes, dask-jobqueue, Kubernetes, ...). Dask does the scheduling, the retries of tasks
whose worker died (``distributed.scheduler.allowed-failures``) and the restarts of dead local
workers (its nanny). Each task is ``batch.run_task``, sent by reference: a worker imports
minigrad once, loads each network once into that module's cache and keeps it across tasks.
"""
import logging

import dask
from distributed import Client, LocalCluster, as_completed

from .batch import BLAS_ENV, error_message, run_task

# Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536 (to hand memory back to the
# OS). Setting any trim threshold also switches off glibc's dynamic mmap threshold, so every
# NumPy temporary above 128 KiB is mmap-ed, page-faulted in and unmapped again: measured here,
# half of the workers' CPU time went to the kernel and an inversion ran about 2x slower than in
# one process. The local cluster's workers start without it (None unsets a pre-spawn
# variable); workers of an existing cluster need the same in their Dask config (README).
MALLOC_TRIM = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


class DaskExecutor:
    """Submit tasks to a local cluster of ``workers`` processes or to ``scheduler``."""

    def __init__(self, workers=2, scheduler=None, blas=None):
        self.cluster = None
        if scheduler:
            self.client = Client(scheduler, timeout="30s")
            self.blas = blas
        else:
            self.blas = 1 if blas is None else blas
            # one BLAS thread per worker, set before the worker processes start
            env = {name: str(self.blas) for name in BLAS_ENV}
            with dask.config.set({MALLOC_TRIM: None}):  # see MALLOC_TRIM
                self.cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1,
                                            processes=True, dashboard_address=None, env=env,
                                            silence_logs=logging.ERROR)
            self.client = Client(self.cluster)

    def describe(self):
        n = len(self.client.scheduler_info().get("workers", {}))
        where = "local cluster" if self.cluster is not None else self.client.scheduler.address
        return f"dask ({where}, {n} workers, BLAS threads {self.blas or 'as started'})"

    def run(self, tasks):
        """Yield (task, output) as tasks finish, in any order; a task that Dask could not run
        (its worker died too often, ...) comes back as a failure record."""
        futures = {self.client.submit(run_task, t, self.blas, pure=False): t for t in tasks}
        try:
            for future in as_completed(futures):
                task = futures.pop(future)
                try:
                    output = future.result()
                except Exception as e:  # noqa: BLE001 - KilledWorker and the like
                    output = {"ok": False, "error": f"dask: {error_message(e)}"}
                yield task, output
        finally:
            self.client.cancel(list(futures))  # those still queued or in flight

    def close(self):
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
