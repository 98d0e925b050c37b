"""PaliGemma: a prefix-LM (image tokens + prompt attend bidirectionally), no chat template."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ocrft.models import fixed_size
from ocrft.models.family import ModelFamily

_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<image>"]
_TINY_IMAGE, _TINY_PATCH = 64, 8


def load_processor(
    path: str, min_pixels: Optional[int] = None, max_pixels: Optional[int] = None, image_size: Optional[int] = None
):
    from transformers import PaliGemmaProcessor

    processor = PaliGemmaProcessor.from_pretrained(path)
    fixed_size.apply_image_size(processor, path, image_size, min_pixels, max_pixels=max_pixels)
    return processor


def format_prompt(processor, prompt: str, system: Optional[str] = None) -> str:
    # The processor itself lays out "<image>*N <bos> prompt \n"; a system text has no slot.
    text = f"{system}\n{prompt}" if system else prompt
    return f"<image>{text}"


# format_prompt as a chat template: "<image>", then the system text and a newline, then the prompt
# (the newline as an expression: chat templates trim the newline that follows a block tag)
CHAT_TEMPLATE = (
    "<image>{% for message in messages %}{% for part in message['content'] %}{% if part['type'] == 'text' %}"
    "{{ part['text'] }}{% if message['role'] == 'system' %}{{ '\\n' }}{% endif %}{% endif %}{% endfor %}{% endfor %}"
)


def build_tiny(out_dir: Path, hidden_size: int = 64, layers: int = 2, heads: int = 4, vision_width: int = 32) -> None:
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    from ocrft.models import tiny
    from ocrft.models.charset_tokenizer import build_tokenizer

    tokenizer = build_tokenizer(
        _SPECIALS, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>", image_token="<image>"
    )
    image_processor = SiglipImageProcessorPil(
        size={"height": _TINY_IMAGE, "width": _TINY_IMAGE}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    image_processor.image_seq_length = (_TINY_IMAGE // _TINY_PATCH) ** 2
    # The processor adds PaliGemma's <loc>/<seg> tokens to the tokenizer, so size the model after it.
    processor = PaliGemmaProcessor(image_processor, tokenizer)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _SPECIALS}
    config = PaliGemmaConfig(
        vision_config=dict(
            model_type="siglip_vision_model",
            **tiny.siglip_vision(vision_width, _TINY_IMAGE, _TINY_PATCH),
            projection_dim=hidden_size,
        ),
        text_config=dict(
            model_type="gemma",
            **{**tiny.text_sizes(tokenizer, hidden_size, layers, heads), "num_key_value_heads": 1},
            head_dim=hidden_size // heads,
            pad_token_id=ids["<pad>"],
            eos_token_id=ids["<eos>"],
            bos_token_id=ids["<bos>"],
        ),
        image_token_index=ids["<image>"],
        vocab_size=len(tokenizer),
        projection_dim=hidden_size,
        hidden_size=hidden_size,
    )
    model = tiny.instantiate(PaliGemmaForConditionalGeneration, config)
    tiny.save(model, processor, out_dir, eos_token_id=ids["<eos>"], pad_token_id=ids["<pad>"])


PALIGEMMA = ModelFamily(
    name="paligemma",
    model_class="PaliGemmaForConditionalGeneration",
    load_processor=load_processor,
    image_settings=fixed_size.image_settings,
    image_token="<image>",
    format_prompt=format_prompt,
    target_suffix=lambda processor: processor.tokenizer.eos_token,
    build_tiny=build_tiny,
    suffix_token_type=1,
    vision_modules=("vision_tower", "multi_modal_projector"),
    chat_template=CHAT_TEMPLATE,
)
