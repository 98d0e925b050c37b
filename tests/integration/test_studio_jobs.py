"""The studio's jobs: real ``python -m ocrft`` children behind the JSON API (uvicorn on a free
port) and behind the Launch form (the whole studio app in headless Chromium).

One tiny training is 4 steps of the offline tiny Qwen2-VL on synthetic lines; most of its
~20 s is Python importing torch and transformers.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Iterator

import pytest

from ocrft.studio.jobs import JobManager
from ocrft.studio.jobs_api import jobs_router
from tests.helpers import LONG_JOB, TINY_JOB
from tests.servers import running, wait_job_over

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[str, JobManager]]:
    from fastapi import FastAPI

    manager = JobManager(max_jobs=1, runs_root=tmp_path / "outputs", cwd=tmp_path, grace_s=15)
    app = FastAPI()
    app.include_router(jobs_router(manager), prefix="/api/jobs")
    with running(app) as url:
        yield url, manager
    manager.shutdown()


def test_misspelt_override_is_refused_with_the_compose_error_and_nothing_starts(api, tmp_path):
    import httpx

    url, _ = api
    answer = httpx.post(f"{url}/api/jobs", json={"overrides": [*TINY_JOB, "train.max_stepz=4"]})
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert "train.max_stepz" in detail and "Key 'max_stepz' not in 'TrainConfig'" in detail
    bad_value = httpx.post(f"{url}/api/jobs", json={"overrides": ["peft.method=lorra"]})
    assert bad_value.status_code == 422 and "peft.method='lorra'" in bad_value.json()["detail"]  # ocrft's own check
    assert httpx.get(f"{url}/api/jobs").json() == []
    assert sorted(p.name for p in (tmp_path / "outputs" / "studio").iterdir()) == ["jobs.sqlite", "owners"]  # no run
    assert httpx.get(f"{url}/api/jobs/nope").status_code == 404


def test_three_jobs_with_max_jobs_1_run_one_after_another_and_all_finish(api):
    """Three 4-step trainings posted at once: one runs, two wait; each starts when the one
    before it ended, and every one finishes with its 4 steps and its eval CER."""
    import httpx

    url, _ = api
    launched = [httpx.post(f"{url}/api/jobs", json={"overrides": TINY_JOB, "multirun": False}) for _ in range(3)]
    assert [r.status_code for r in launched] == [201] * 3
    ids = [r.json()["id"] for r in launched]
    assert len({r.json()["run_dir"] for r in launched}) == 3 and all("/studio/" in r.json()["run_dir"] for r in launched)
    statuses = {job["id"]: job["status"] for job in httpx.get(f"{url}/api/jobs").json()}
    assert [statuses[i] for i in ids] == ["running", "queued", "queued"]

    jobs = [wait_job_over(url, job_id) for job_id in ids]
    for job in jobs:
        assert job["status"] == "finished", Path(job["log"]).read_text()[-3000:]
        assert job["step"] == 4 and "eval/cer" in job["metrics"] and "train/mean_loss" in job["metrics"]
        assert (Path(job["run_dir"]) / "run.json").is_file() and Path(job["log"]).is_file()
        # progress comes from the run's structured events, not from its log (ocrft.progress)
        events = [json.loads(line) for line in (Path(job["run_dir"]) / "progress.jsonl").read_text().splitlines()]
        assert [e["phase"] for e in events][0] == "start" and events[-1] == {**events[-1], "phase": "end", "status": "finished"}
        train = [e for e in events if e["phase"] == "train"]
        assert [e["step"] for e in train if "metrics" not in e][-1] == 4 and all(e["max_steps"] == 4 for e in train)
        assert any("train/mean_loss" in e.get("metrics", {}) for e in train)  # the Trainer's closing log
    for before, after in zip(jobs, jobs[1:]):
        assert after["started"] >= before["ended"], "max_jobs=1 but two jobs ran at once"


def test_cancel_a_running_job_then_resume_it_to_finished(api):
    import httpx

    url, _ = api
    job_id = httpx.post(f"{url}/api/jobs", json={"overrides": LONG_JOB}).json()["id"]
    run_dir = Path(httpx.get(f"{url}/api/jobs/{job_id}").json()["run_dir"])
    deadline = time.monotonic() + 120
    while not (run_dir / "checkpoints" / "checkpoint-2").is_dir():  # something to resume from
        assert time.monotonic() < deadline and httpx.get(f"{url}/api/jobs/{job_id}").json()["status"] == "running"
        time.sleep(0.1)
    assert httpx.post(f"{url}/api/jobs/{job_id}/cancel").status_code == 200
    cancelled = wait_job_over(url, job_id, timeout=60)
    assert cancelled["status"] == "cancelled", Path(cancelled["log"]).read_text()[-3000:]
    assert cancelled["step"] is not None and cancelled["step"] < 200
    assert httpx.post(f"{url}/api/jobs/{job_id}/cancel").json()["status"] == "cancelled"  # a no-op now

    resumed = httpx.post(f"{url}/api/jobs/{job_id}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] in ("queued", "running")
    done = wait_job_over(url, job_id)
    log_text = Path(done["log"]).read_text()
    assert done["status"] == "finished", log_text[-3000:]
    assert done["step"] == 200 and done["run_dir"] == str(run_dir)
    assert "resuming from" in log_text  # from the checkpoint, not from scratch
    assert httpx.post(f"{url}/api/jobs/{job_id}/resume").status_code == 409  # a finished job does not resume


def test_launch_form_in_chromium_refuses_a_typo_then_runs_a_tiny_training(tmp_path):
    """The whole studio app: the Launch tab's form shows the compose error for a misspelt key
    (and starts nothing), shows the composed config, then launches a 4-step training whose
    row in the jobs table reaches "finished". No console errors."""
    from omegaconf import OmegaConf

    from ocrft.config import StudioConfig
    from tests.browser import Browser

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from ocrft.studio.app import build_app

    studio_cfg = OmegaConf.structured(StudioConfig(roots=[str(tmp_path / "outputs")], max_jobs=1))
    app = build_app(studio_cfg)
    with running(app) as url, Browser(timeout=60) as b:
        b.open(url + "/", wait_for_css="button[role=tab]")
        tab = [t for t in b.driver.find_elements("css selector", "button[role=tab]") if t.text.strip() == "Launch"]
        tab[0].click()
        b.wait_for("#launch-overrides textarea")
        b.type_text("#launch-overrides textarea", "\n".join([*TINY_JOB, "train.max_stepz=4"]))
        b.click("#launch-launch")
        wait_text(b, "#launch-message", "max_stepz")
        assert "Key 'max_stepz' not in 'TrainConfig'" in b.run_js("return document.querySelector('#launch-message').innerText")
        # the form holds a launch to ocrft's own config as the API does (issue 22)
        b.type_text("#launch-overrides textarea", "\n".join([*TINY_JOB, "+hydra.callbacks.x._target_=shutil.copyfile"]))
        b.click("#launch-launch")
        wait_text(b, "#launch-message", "_target_ names a Python callable")
        b.type_text("#launch-overrides textarea", "\n".join([*TINY_JOB, f"run_dir={tmp_path / 'elsewhere'}"]))
        b.click("#launch-show")
        wait_text(b, "#launch-message", "outside the studio's roots")
        assert not (tmp_path / "elsewhere").exists()
        assert sorted(p.name for p in (tmp_path / "outputs" / "studio").iterdir()) == ["jobs.sqlite", "owners"]  # no run

        b.type_text("#launch-overrides textarea", "\n".join(TINY_JOB))
        b.click("#launch-show")
        wait_text(b, "#launch-message", "composes:")
        wait_text(b, "#launch-config", "task: train")  # the editor renders only the lines in view
        b.click("#launch-launch")
        wait_text(b, "#launch-message", "run_dir", timeout=30)
        wait_text(b, "#launch-jobs", "finished", timeout=180)  # the gr.Timer refreshes the table
        assert not b.console_errors()
    runs = list((tmp_path / "outputs" / "studio").glob("*/run.json"))
    assert len(runs) == 1 and '"status": "finished"' in runs[0].read_text()


def wait_text(b, css: str, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        seen = b.run_js("const e = document.querySelector(arguments[0]); return e ? e.innerText : ''", css)
        if text in seen:
            return
        time.sleep(0.3)
    raise AssertionError(f"{css} never showed {text!r}; it shows: {seen[-2000:]}")
