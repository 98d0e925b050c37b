"""train=grpo: TRL's GRPOTrainer on ocrft's records, prompts and rewards.

TRL lays a prompt out with the processor's chat template; ocrft checks at start that this
is exactly the text ``family.format_prompt`` writes for SFT, validation and evaluation, so
that GRPO samples from the model that was trained and is scored. Validation (``val/cer``),
best-checkpoint keeping, early stopping and pruning are the same callbacks as SFT's.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from trl import GRPOTrainer
from trl.data_utils import prepare_multimodal_messages

from ocrft.training.builders import build_grpo_config
from ocrft.training.checkpoints import removed_if_disk_full
from ocrft.training.rewards import RewardSettings, build_rewards, completion_text

log = logging.getLogger(__name__)


class OcrftGRPOTrainer(GRPOTrainer):
    """TRL's GRPOTrainer, with the completion tokens marked as the family marks a target
    (``suffix_token_type``), a checkpoint save cut short by a full disk leaving no partial
    ``checkpoint-N`` (training.checkpoints), and every ``table_steps`` steps the reads sampled
    for that step handed to ``log_reads(rows, step)`` (one dict per read: line id, target, read
    and each reward; rank 0's share of them under several processes).

    TRL extends ``token_type_ids`` over the completion with 0. For PaliGemma's prefix-LM, 0
    means "prefix": the completion tokens would attend to each other both ways, so each
    token's log-probability would see the tokens after it. ocrft's collator marks a target
    with the family's ``suffix_token_type`` (1 for PaliGemma, 0 for the others); so does this.
    """

    def __init__(self, *args: Any, suffix_token_type: int = 0, table_steps: int = 0,
                 log_reads: Optional[Callable[[list[dict], int], None]] = None, **kwargs: Any) -> None:  # fmt: skip
        self.suffix_token_type = suffix_token_type
        self.table_steps, self.log_reads = table_steps, log_reads
        super().__init__(*args, **kwargs)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        step = self.state.global_step + 1  # the step these reads are sampled for
        if self.log_reads and self.table_steps and step % self.table_steps == 0 and self.model.training \
                and self.accelerator.is_main_process:  # fmt: skip
            # the rewards come gathered from every process; this process's reads are its slice
            start = self.accelerator.process_index * len(prompts)
            rows = [{"step": step, "id": x["id"], "target": x["text"], "read": completion_text(c),
                     **{f"reward/{name}": value for name, value in zip(self.reward_func_names, scores)}}
                    for x, c, scores in zip(inputs, completions, rewards[start : start + len(prompts)].tolist())]  # fmt: skip
            self.log_reads(rows, step)
        return rewards

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, *args,
                                           token_type_ids=None, **kwargs):  # fmt: skip
        if token_type_ids is not None and self.suffix_token_type != 0:
            token_type_ids = token_type_ids.clone()
            token_type_ids[:, -logits_to_keep:] = self.suffix_token_type  # the completion is the last columns
        return super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep, *args,
                                                          token_type_ids=token_type_ids, **kwargs)  # fmt: skip

    def _save_checkpoint(self, model, trial) -> None:
        folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
        with removed_if_disk_full(folder):
            super()._save_checkpoint(model, trial)


def messages(prompt: str, system: Optional[str]) -> list[dict]:
    """The conversational prompt TRL needs for an image (it inserts the image before the text)."""
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]


def to_grpo_dataset(train_set, system: Optional[str]):
    """The SFT dataset (ocrft.training.datasets.to_train_dataset) as GRPOTrainer reads it: a
    conversational ``prompt``, the ``image`` opened when a batch is drawn, and the target
    ``text`` (with ``id``), which TRL hands to the rewards as keyword arguments."""
    from ocrft.data.images import open_image

    def open_images(batch: dict) -> dict:
        return {**batch, "image": [open_image(path) for path in batch["image"]]}

    dataset = train_set.map(lambda row: {"prompt": messages(row["prompt"], system), "instruction": row["prompt"]},
                            remove_columns=["prompt", "length"])  # fmt: skip
    dataset.set_transform(open_images)
    return dataset


def check_prompt_layout(processor, family, prompt: str, system: Optional[str], *, image: Any) -> None:
    """Give a processor without a chat template the family's (PaliGemma), and check that the
    prompt TRL renders is the one ``family.format_prompt`` writes.

    Raises:
        RuntimeError: they differ (a family whose chat template and format_prompt disagree).
    """
    if not getattr(processor, "chat_template", None) and family.chat_template:
        processor.chat_template = family.chat_template
    rendered = processor.apply_chat_template(prepare_multimodal_messages(messages(prompt, system), images=[image]),
                                             add_generation_prompt=True, tokenize=False)  # fmt: skip
    expected = family.format_prompt(processor, prompt, system)
    if rendered != expected:
        raise RuntimeError(f"train=grpo: the {family.name} processor's chat template renders {rendered!r}, but "
                           f"ocrft trains and evaluates on {expected!r}")  # fmt: skip


def build_grpo_trainer(model, processor, family, train_set, *, cfg, callbacks: Sequence, end_ids: Sequence[int],
                       output_dir: Path, tracker) -> OcrftGRPOTrainer:  # fmt: skip
    """The GRPOTrainer of train=grpo.

    Args:
        cfg: the run's config; its ``train`` (GrpoTrainConfig), ``eval`` (how rewards score,
            as evaluation does), ``prompt.system`` and ``seed`` are read.
        train_set: the SFT dataset of the train split (ocrft.training.datasets.to_train_dataset).
        end_ids: the tokens that end a read (the generator's ``eos_ids``): sampling stops at
            them, as greedy validation does, and the ``eos`` reward looks for them.
        output_dir: where the Trainer writes ``checkpoint-N``.
        tracker: the run's tracker, which gets a table of sampled reads every
            ``train.completions_table_steps`` steps (``grpo_reads/step_<N>.json``).
    """
    from ocrft.data.images import open_image

    dataset = to_grpo_dataset(train_set, cfg.prompt.system)
    check_prompt_layout(processor, family, train_set[0]["prompt"], cfg.prompt.system, image=open_image(train_set[0]["image"]))
    check_json_targets(cfg.train.rewards.json_fields, train_set["text"])
    rewards = build_rewards(cfg.train.rewards, RewardSettings.from_eval(cfg.eval, end_ids))
    # TRL left-pads the prompts and takes the processor's per-token fields (Qwen's
    # mm_token_type_ids) as they come: padded on the other side, they would misplace the image
    # of every shorter prompt. ocrft's collator reads the real tokens whichever side is padded.
    processor.tokenizer.padding_side = "left"
    # TRL stops a completion at the generation config's end tokens (and the tokenizer's)
    model.generation_config.eos_token_id = list(end_ids)
    args = build_grpo_config(cfg.train, cfg.seed, output_dir, reward_weights=rewards.weights,
                             suppress_tokens=special_token_ids(processor.tokenizer, keep=end_ids))  # fmt: skip
    log.info("GRPO: %d completions of each of %d prompts per step; rewards %s", args.num_generations,
             args.generation_batch_size // args.num_generations, dict(zip(rewards.names, rewards.weights)))  # fmt: skip
    return OcrftGRPOTrainer(model=model, reward_funcs=rewards.funcs, args=args, train_dataset=dataset,
                            processing_class=processor, callbacks=list(callbacks),
                            suffix_token_type=family.suffix_token_type, table_steps=cfg.train.completions_table_steps,
                            log_reads=partial(log_reads, tracker))  # fmt: skip


def log_reads(tracker, rows: list[dict], step: int) -> None:
    """One step's sampled reads as the MLflow table ``grpo_reads/step_<N>.json``."""
    import pandas

    tracker.log_table(pandas.DataFrame(rows), f"grpo_reads/step_{step:06d}.json")


def special_token_ids(tokenizer, keep: Sequence[int]) -> list[int]:
    """The tokenizer's special tokens but ``keep`` (the end tokens), which sampling must not
    produce: a read is text, and decoding drops special tokens, so a sampled one spends the
    token budget on nothing; an image placeholder sampled mid-read would not match the image
    features in the forward that scores the read (TRL suppresses ``config.image_token_id`` only)."""
    return sorted({i for i, token in tokenizer.added_tokens_decoder.items() if token.special} - set(keep))


def check_json_targets(weight: float, targets: Sequence[str]) -> None:
    """The json_fields reward scores JSON targets: refuse it on a train split that has none."""
    from ocrft.config import ConfigError
    from ocrft.evaluation.metrics import score_sample

    # a target read against itself is valid JSON exactly when the metric parses it
    if weight and not any(score_sample(t, t, json_target=True)["json_valid"] for t in targets):
        raise ConfigError(f"train.rewards.json_fields={weight}: no target of the train split is JSON; "
                          "set train.rewards.json_fields=0 or use a JSON dataset (data=invoice_json)")  # fmt: skip
