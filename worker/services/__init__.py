"""What the API, the console and the CLI do with files and jobs, free of HTTP: each
service takes the process's ``Runtime`` (and delivery, for uploads that warm derivatives)
and raises the errors of ``worker.core.errors`` — the API's one handler answers them."""

from __future__ import annotations

from dataclasses import dataclass

from worker.delivery.service import Delivery
from worker.runtime import Runtime
from worker.services.files import FileService
from worker.services.folders import FolderJobs
from worker.services.jobs import JobService
from worker.services.uploads import Uploader


@dataclass(frozen=True)
class Services:
    runtime: Runtime
    delivery: Delivery
    files: FileService
    jobs: JobService
    uploads: Uploader
    folders: FolderJobs


def build(runtime: Runtime, delivery: Delivery) -> Services:
    """The services of one process, over its ``Runtime`` (built once, in the entry point)."""
    files = FileService(runtime)
    jobs = JobService(runtime)
    return Services(runtime, delivery, files, jobs, Uploader(runtime, delivery, files, jobs),
                    FolderJobs(runtime))
