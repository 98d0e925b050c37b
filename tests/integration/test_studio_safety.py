"""The studio is safe on a workstation (issue 22): what a hostile web page in the user's browser
would send, against `python -m ocrft task=studio` on its defaults (login off, 127.0.0.1); and a
studio SIGKILLed mid-job that lists, resumes and runs its jobs after a restart.

Each attack gets a 4xx that says why, and no file appears where the refused request pointed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import LONG_JOB, TINY_JOB
from tests.servers import studio_server, wait_job_over

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def studio_roots(tmp_path_factory) -> Path:
    """<folder>/outputs holding note.txt, with secret.txt beside it in <folder>: the `studio`
    (tests/fixtures/studio.py) serves the first only."""
    folder = tmp_path_factory.mktemp("safety")
    (folder / "outputs").mkdir()
    (folder / "outputs" / "note.txt").write_text("under the roots")
    (folder / "secret.txt").write_text("beside the roots")
    return folder / "outputs"


def test_a_rebinding_host_gets_403_on_every_route(studio):
    url, port, folder = studio.url, studio.port, studio.folder
    note = "/files" + str((folder / "outputs" / "note.txt").resolve())
    for path in ("/api/jobs", "/", note, "/gradio_api/info", "/config"):
        assert httpx.get(url + path).status_code in (200, 404), path  # its own name: served (gradio may 404 a path)
        refused = httpx.get(url + path, headers={"host": f"evil.example:{port}"})
        assert refused.status_code == 403, (path, refused.text)
        assert "not a name of this server" in refused.json()["detail"]
    assert httpx.get(url + note).text == "under the roots"
    launch = httpx.post(f"{url}/api/jobs", json={"overrides": TINY_JOB}, headers={"host": f"evil.example:{port}"})
    assert launch.status_code == 403 and httpx.get(f"{url}/api/jobs").json() == []


def test_a_foreign_origin_cannot_launch_or_call_gradio(studio):
    url, folder = studio.url, studio.folder
    for origin in ("http://evil.example", "null", "http://127.0.0.1:1"):
        answer = httpx.post(f"{url}/api/jobs", json={"overrides": TINY_JOB}, headers={"origin": origin})
        assert answer.status_code == 403 and "Origin" in answer.json()["detail"], answer.text
        gradio = httpx.post(f"{url}/gradio_api/queue/join", json={}, headers={"origin": origin})
        assert gradio.status_code == 403
    assert httpx.get(f"{url}/api/jobs").json() == []
    assert not (folder / "outputs" / "studio").exists() or not list((folder / "outputs" / "studio").glob("*.log"))


def test_code_hydra_keys_and_paths_outside_the_roots_are_refused_and_write_nothing(studio):
    url, port, folder = studio.url, studio.port, studio.folder
    stolen, elsewhere, prepared = folder / "stolen.txt", folder / "elsewhere", folder / "prepared"
    attacks = [
        ["+hydra.callbacks.x._target_=shutil.copyfile", "+hydra.callbacks.x.src=/etc/hostname", f"+hydra.callbacks.x.dst={stolen}"],
        ["+hydra.callbacks.x.anything=1"],
        [*TINY_JOB, f"run_dir={elsewhere}"],
        [*TINY_JOB, "run_dir=outputs/../elsewhere"],
        ["task=prepare", "data=synthetic", f"data.output_dir={prepared}"],
        [*TINY_JOB, f"tracking.uri=sqlite:///{folder}/m.db"],
    ]
    same_origin = {"origin": f"http://127.0.0.1:{port}"}
    for overrides in attacks:
        answer = httpx.post(f"{url}/api/jobs", json={"overrides": overrides}, headers=same_origin)
        assert answer.status_code == 422, (overrides, answer.text)
        assert answer.json()["detail"], overrides  # says why, naming the override
    time.sleep(2)  # nothing was started that could still write
    assert not stolen.exists() and not elsewhere.exists() and not prepared.exists() and not (folder / "m.db").exists()
    assert httpx.get(f"{url}/api/jobs").json() == []


def test_files_traversal_is_refused(studio):
    url, folder = studio.url, studio.folder
    outside = str((folder / "secret.txt").resolve())
    under = str((folder / "outputs").resolve())
    for path in (f"/files{outside}", f"/files{under}/../secret.txt", f"/files{under}/%2e%2e/secret.txt",
                 f"/files{under}/..%2fsecret.txt", "/files/etc/passwd", "/files//etc/passwd"):  # fmt: skip
        answer = httpx.get(url + path)
        assert answer.status_code == 404 and "beside the roots" not in answer.text, path


def test_a_same_origin_launch_still_works(studio):
    url, port = studio.url, studio.port
    answer = httpx.post(f"{url}/api/jobs", json={"overrides": TINY_JOB}, headers={"origin": f"http://127.0.0.1:{port}"})
    assert answer.status_code == 201, answer.text
    job = wait_job_over(url, answer.json()["id"])
    assert job["status"] == "finished" and job["step"] == 4, Path(job["log"]).read_text()[-3000:]


def test_beyond_loopback_the_studio_needs_a_login():
    env = {k: v for k, v in os.environ.items() if k != "OCRFT_STUDIO_LOGIN"}
    result = subprocess.run([sys.executable, "-m", "ocrft", "task=studio", "studio.host=0.0.0.0", "tracking=none",
                             "run_dir=/tmp/ocrft-never-written"], capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert "ocrft: error:" in result.stderr and "studio.auth_env" in result.stderr


def test_a_studio_killed_mid_job_lists_resumes_and_runs_its_jobs_after_a_restart(tmp_path):
    """SIGKILL the studio while one job runs and another waits; start it again: both are listed,
    the interrupted one resumes in its own folder to its last step, the queued one runs."""
    roots = tmp_path / "outputs"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    # long enough to be still running a few seconds after the kill, whatever the machine's speed
    longer = [o for o in LONG_JOB if not o.startswith(("train.max_steps", "train.save_steps"))]
    longer += ["train.max_steps=300", "train.save_steps=4"]
    with studio_server(tmp_path, roots, env=env) as (url, studio):
        url = url.rstrip("/")
        long_job = httpx.post(f"{url}/api/jobs", json={"overrides": longer}).json()
        queued_job = httpx.post(f"{url}/api/jobs", json={"overrides": TINY_JOB}).json()
        run_dir = Path(long_job["run_dir"])
        deadline = time.monotonic() + 180
        while not (run_dir / "checkpoints" / "checkpoint-4").is_dir():
            assert time.monotonic() < deadline, httpx.get(f"{url}/api/jobs/{long_job['id']}").json()
            time.sleep(0.2)
        assert httpx.get(f"{url}/api/jobs/{queued_job['id']}").json()["status"] == "queued"
        os.kill(studio.pid, signal.SIGKILL)
        studio.wait()

    # The orphaned run notices its studio is gone and stops as on Ctrl-C (ocrft.parent_watch).
    log = Path(long_job["run_dir"] + ".log")
    deadline = time.monotonic() + 120
    while '"status": "running"' in (run_dir / "run.json").read_text():
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)
    assert "is gone: stopping" in log.read_text()

    with studio_server(tmp_path, roots, env=env) as (url, _):
        url = url.rstrip("/")
        jobs = {job["id"]: job for job in httpx.get(f"{url}/api/jobs").json()}
        assert list(jobs) == [long_job["id"], queued_job["id"]]
        assert jobs[long_job["id"]]["status"] == "interrupted"
        assert jobs[queued_job["id"]]["status"] in ("queued", "running", "finished")
        assert httpx.post(f"{url}/api/jobs/{long_job['id']}/resume").status_code == 200
        queued_done = wait_job_over(url, queued_job["id"])
        resumed = wait_job_over(url, long_job["id"], timeout=300)
    assert queued_done["status"] == "finished", Path(queued_done["log"]).read_text()[-3000:]
    text = log.read_text()
    assert resumed["status"] == "finished", text[-3000:]
    assert resumed["step"] == 300 and resumed["run_dir"] == str(run_dir)
    assert "resuming from" in text  # from its checkpoint, in the same folder
