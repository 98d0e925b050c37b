"""train=grpo samples from the prompt ocrft trains and evaluates on: for every family, the
token ids TRL's GRPOTrainer lays out (the processor's chat template) equal the collator's."""

from __future__ import annotations

import pytest

from ocrft.data.images import open_image
from ocrft.models.collate import Collator, Sample
from ocrft.training.grpo import check_prompt_layout, messages
from tests.helpers import REPO

IMAGE = REPO / "tests" / "assets" / "tiny_ocr" / "line_00.png"


@pytest.mark.parametrize("system", [None, "Transcribe exactly."])
def test_trl_prompt_ids_equal_the_collators(family_processor, system):
    from trl.data_utils import prepare_multimodal_messages

    family, processor = family_processor
    image, prompt = open_image(IMAGE), "Read the line."
    check_prompt_layout(processor, family, prompt, system, image=image)  # PaliGemma gets its chat template here
    ours = Collator(processor, family, system=system).encode_prompts([Sample(image=image, prompt=prompt)])[0][0]
    # as GRPOTrainer._tokenize_prompts calls it
    trl = processor.apply_chat_template(conversation=[prepare_multimodal_messages(messages(prompt, system), images=[image])],
                                        add_generation_prompt=True, tokenize=True, return_dict=True)  # fmt: skip
    assert list(trl["input_ids"][0]) == ours["input_ids"][0].tolist()


def test_a_chat_template_that_disagrees_with_format_prompt_is_refused(family_processor):
    # The chat families' format_prompt is their chat template; PaliGemma's is its own text
    family, processor = family_processor
    if family.chat_template is None:
        pytest.skip("format_prompt renders the processor's own chat template")
    saved = processor.chat_template
    try:
        processor.chat_template = "<image>{% for m in messages %}{{ m['role'] }}{% endfor %}"
        with pytest.raises(RuntimeError, match=f"the {family.name} processor's chat template renders"):
            check_prompt_layout(processor, family, "Read the line.", None, image=open_image(IMAGE))
    finally:
        processor.chat_template = saved
