"""The Launch tab: compose a run from the config groups and free overrides, show the composed
config (or the CLI's error), launch it as a job, and watch, cancel or resume jobs."""

from __future__ import annotations

import logging
from typing import Any

from ocrft.studio.compose import OverrideError, group_options

from ocrft.studio.jobs import JobManager

log = logging.getLogger(__name__)

NONE = "(default)"
# Groups offered as dropdowns; the rest (prompt, eval, tracking, ...) go in free overrides.
FORM_GROUPS = ("task", "model", "data", "peft", "quant", "train")
# A studio launched from the studio, or a task that is not a task (base_*), is no choice.
HIDDEN_TASKS = ("studio",)
COLUMNS = ["id", "status", "step", "loss", "val", "run_dir", "overrides"]
ACTIVE = ("queued", "running")


def form_overrides(experiment: str, choices: dict[str, str], free_text: str) -> list[str]:
    """The overrides the form stands for: the experiment, each group picked, then the free lines
    (last, so they win, as on the command line)."""
    overrides = [f"+experiment={experiment}"] if experiment and experiment != NONE else []
    overrides += [f"{group}={name}" for group, name in choices.items() if name and name != NONE]
    return overrides + [line.strip() for line in (free_text or "").splitlines() if line.strip()]


def jobs_rows(manager: JobManager) -> list[list[Any]]:
    """One row per job, newest first, for the jobs table."""
    rows = []
    for job in reversed(manager.list()):
        metrics = job["metrics"]
        val = next((f"{k}={v:.4g}" for k, v in metrics.items() if k.startswith("val/") and k != "val/best_step"), "")
        loss = metrics.get("train/loss", metrics.get("train/mean_loss"))
        step = "" if job["step"] is None else f"{job['step']}/{job['max_steps'] or '?'}"
        rows.append([job["id"], job["status"], step, "" if loss is None else f"{loss:.4g}", val, job["run_dir"],
                     " ".join(o for o in job["overrides"] if not o.startswith(("run_dir=", "hydra.sweep.dir=")))])  # fmt: skip
    return rows


def _job_ids(manager: JobManager) -> list[str]:
    return [job["id"] for job in reversed(manager.list())]


def launch_tab(manager: JobManager) -> None:
    """The Launch tab's components, in the current ``gr.Blocks`` context."""
    import gradio as gr
    from omegaconf import OmegaConf

    from ocrft.redact import redacted_yaml

    gr.Markdown(
        "Compose a run as on the command line (`python -m ocrft ...`): an experiment, config groups, "
        "free overrides (one per line, e.g. `train.max_steps=4`). It starts as a child process in its own "
        "`run_dir`; a cancelled run resumes from its last checkpoint."
    )
    with gr.Row():
        experiment = gr.Dropdown([NONE, *group_options("experiment")], value=NONE, label="experiment", elem_id="launch-experiment")
        groups = {
            group: gr.Dropdown([NONE, *(n for n in group_options(group) if n not in HIDDEN_TASKS and not n.startswith("base_"))],
                               value=NONE, label=group, elem_id=f"launch-{group}")  # fmt: skip
            for group in FORM_GROUPS
        }
    free = gr.Textbox(label="overrides (one per line)", lines=4, placeholder="train.max_steps=4\ntracking=none",
                      elem_id="launch-overrides")  # fmt: skip
    multirun = gr.Checkbox(label="multirun (--multirun: a sweep)", value=False, elem_id="launch-multirun")
    with gr.Row():
        show = gr.Button("Show config", elem_id="launch-show")
        launch = gr.Button("Launch", variant="primary", elem_id="launch-launch")
    message = gr.Markdown(elem_id="launch-message")
    config = gr.Code(label="composed config", language="yaml", elem_id="launch-config")
    table = gr.Dataframe(headers=COLUMNS, value=lambda: jobs_rows(manager), interactive=False, wrap=True,
                         label="jobs", elem_id="launch-jobs")  # fmt: skip
    with gr.Row():
        chosen = gr.Dropdown(choices=_job_ids(manager), label="job", allow_custom_value=True, elem_id="launch-job")
        cancel = gr.Button("Cancel", variant="stop", elem_id="launch-cancel")
        resume = gr.Button("Resume", elem_id="launch-resume")
        refresh = gr.Button("Refresh", elem_id="launch-refresh")
    timer = gr.Timer(2.0)
    inputs = [experiment, *groups.values(), free, multirun]

    def overrides_of(values: tuple) -> tuple[list[str], bool]:
        exp, *picked, text, sweep = values
        return form_overrides(exp, dict(zip(groups, picked)), text), bool(sweep)

    def on_show(*values: Any) -> tuple[str, str]:
        overrides, sweep = overrides_of(values)
        try:
            _, _, cfg = manager.check(overrides, multirun=sweep)  # what Launch would check: the same refusals
        except OverrideError as err:
            return f"**Refused:** `{' '.join(overrides)}`\n\n```\n{err}\n```", ""
        OmegaConf.resolve(cfg)
        return f"`python -m ocrft {' '.join(overrides)}` composes:", redacted_yaml(cfg)

    def on_launch(*values: Any) -> tuple[str, Any, Any]:
        overrides, sweep = overrides_of(values)
        try:
            job = manager.submit(overrides, multirun=sweep)
        except OverrideError as err:
            return f"**Refused, nothing started:**\n\n```\n{err}\n```", jobs_rows(manager), gr.update()
        text = f"Job `{job.id}` {job.status}, run_dir `{job.run_dir}`"
        return text, jobs_rows(manager), gr.update(choices=_job_ids(manager), value=job.id)

    def on_action(action: str, job_id: str) -> tuple[str, Any]:
        try:
            job = getattr(manager, action)(job_id)
            text = f"Job `{job.id}`: {job.status}"
        except KeyError:
            text = f"No job `{job_id}`"
        except ValueError as err:
            text = str(err)
        return text, jobs_rows(manager)

    def on_tick() -> Any:
        return jobs_rows(manager)

    show.click(on_show, inputs, [message, config])
    launch.click(on_launch, inputs, [message, table, chosen])
    cancel.click(lambda j: on_action("cancel", j), chosen, [message, table])
    resume.click(lambda j: on_action("resume", j), chosen, [message, table])
    refresh.click(lambda: (jobs_rows(manager), gr.update(choices=_job_ids(manager))), None, [table, chosen])
    timer.tick(on_tick, None, table, show_progress="hidden")
