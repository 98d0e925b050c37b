"""Gemma 3: a SigLIP tower at a fixed square size, pooled to a fixed number of image tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ocrft.models import fixed_size
from ocrft.models.chat import chat_prompt
from ocrft.models.family import ModelFamily

_SPECIALS = [
    "<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>",
    "<start_of_image>", "<end_of_image>", "<image_soft_token>",
]  # fmt: skip

# Gemma 3's turn format (the real template also folds a system turn into the first user turn).
_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<start_of_image>{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
_TINY_IMAGE, _TINY_PATCH, _TINY_IMAGE_TOKENS = 64, 8, 16


def load_processor(
    path: str, min_pixels: Optional[int] = None, max_pixels: Optional[int] = None, image_size: Optional[int] = None
):
    # Fixed-size family: every image is resized to the processor's square; pixel bounds don't apply.
    from transformers import Gemma3Processor

    processor = Gemma3Processor.from_pretrained(path)
    fixed_size.apply_image_size(processor, path, image_size, min_pixels, max_pixels=max_pixels)
    return processor


def build_tiny(out_dir: Path, hidden_size: int = 64, layers: int = 2, heads: int = 4, vision_width: int = 32) -> None:
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    from ocrft.models import tiny
    from ocrft.models.charset_tokenizer import build_tokenizer

    tokenizer = build_tokenizer(
        _SPECIALS,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        boi_token="<start_of_image>",
        eoi_token="<end_of_image>",
        image_token="<image_soft_token>",
    )
    image_processor = Gemma3ImageProcessorPil(
        size={"height": _TINY_IMAGE, "width": _TINY_IMAGE}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    processor = Gemma3Processor(image_processor, tokenizer, chat_template=_CHAT_TEMPLATE, image_seq_length=_TINY_IMAGE_TOKENS)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _SPECIALS}
    head_dim = hidden_size // heads
    config = Gemma3Config(
        text_config=dict(
            **tiny.text_sizes(tokenizer, hidden_size, layers, heads),
            head_dim=head_dim,
            query_pre_attn_scalar=head_dim,
            # one of each attention type so both RoPE paths run
            layer_types=(["sliding_attention", "full_attention"] * layers)[:layers],
            sliding_window=512,
            pad_token_id=ids["<pad>"],
            eos_token_id=ids["<eos>"],
            bos_token_id=ids["<bos>"],
        ),
        vision_config=tiny.siglip_vision(vision_width, _TINY_IMAGE, _TINY_PATCH),
        mm_tokens_per_image=_TINY_IMAGE_TOKENS,
        boi_token_index=ids["<start_of_image>"],
        eoi_token_index=ids["<end_of_image>"],
        image_token_index=ids["<image_soft_token>"],
    )
    model = tiny.instantiate(Gemma3ForConditionalGeneration, config)
    tiny.save(model, processor, out_dir, eos_token_id=[ids["<eos>"], ids["<end_of_turn>"]], pad_token_id=ids["<pad>"])


GEMMA3 = ModelFamily(
    name="gemma3",
    model_class="Gemma3ForConditionalGeneration",
    load_processor=load_processor,
    image_settings=fixed_size.image_settings,
    image_token="<image_soft_token>",
    format_prompt=chat_prompt,
    target_suffix=lambda processor: "<end_of_turn>",
    build_tiny=build_tiny,
    vision_modules=("vision_tower", "multi_modal_projector"),
)
