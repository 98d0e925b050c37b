"""The JSON jobs API (FastAPI router, mounted at ``/api/jobs``); docs/studio.md has examples.

    POST /api/jobs               {"overrides": [...], "multirun": false} -> {"id", "run_dir"}
    GET  /api/jobs               -> [job, ...]
    GET  /api/jobs/{id}          -> {"status", "step", "metrics", "run_dir", ...}
    POST /api/jobs/{id}/cancel   -> the job
    POST /api/jobs/{id}/resume   -> the job (a cancelled or failed one, queued again)

Overrides the CLI would refuse get 422 with the compose error, which names the key.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from ocrft.studio.compose import OverrideError

from ocrft.studio.jobs import JobManager


class LaunchRequest(BaseModel):
    overrides: list[str] = Field(default_factory=list, description="CLI overrides, e.g. train.max_steps=4")
    multirun: bool = False


def jobs_router(manager: JobManager) -> APIRouter:
    """The JSON jobs API over ``manager``, to be mounted at ``/api/jobs`` (docs/studio.md)."""
    router = APIRouter(tags=["jobs"])

    def found(job_id: str, action: Any) -> dict[str, Any]:
        try:
            result = action(job_id)
        except KeyError:
            raise HTTPException(status_code=404, detail=f"no job {job_id!r}") from None
        except ValueError as err:  # resuming a job that is not cancelled or failed
            raise HTTPException(status_code=409, detail=str(err)) from None
        return result if isinstance(result, dict) else result.as_dict()

    @router.post("", status_code=201)
    def launch(request: LaunchRequest) -> dict[str, Any]:
        try:
            job = manager.submit(request.overrides, multirun=request.multirun)
        except OverrideError as err:
            raise HTTPException(status_code=422, detail=str(err)) from None
        return {"id": job.id, "run_dir": str(job.run_dir), "status": job.status}

    @router.get("")
    def list_jobs() -> list[dict[str, Any]]:
        return manager.list()

    @router.get("/{job_id}")
    def get_job(job_id: str) -> dict[str, Any]:
        return found(job_id, manager.get)

    @router.post("/{job_id}/cancel")
    def cancel_job(job_id: str) -> dict[str, Any]:
        return found(job_id, manager.cancel)

    @router.post("/{job_id}/resume")
    def resume_job(job_id: str) -> dict[str, Any]:
        return found(job_id, manager.resume)

    return router
