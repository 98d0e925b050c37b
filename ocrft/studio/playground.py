"""The studio's Playground tab: transcribe one image with local models and an endpoint, side by side.

Local models (``model.path`` values: ``asset:demo_base``, ``tiny:qwen2_vl``, a run folder)
go through ocrft.evaluation.generation.build_generator, as task=predict does, and stay
loaded per (family, path). Endpoints go through ocrft.evaluation.endpoint's client.

An API key typed here is used for one request and dropped: it is an event input only (no
gr.State, which gradio may serialise), it is handed to the client in memory, and every
error message is scrubbed of it before it is shown or logged.
"""

from __future__ import annotations

import html
import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ocrft.conf_dir import CONF_DIR
from ocrft.redact import scrub_text

log = logging.getLogger(__name__)

PROMPT_DIR = CONF_DIR / "prompt"
# A new prompt's name becomes a config group option (prompt=<name>): keep it a plain word.
_PROMPT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_RESERVED = {"base_prompt"}
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif"}
_MAX_SAMPLES = 500  # choices offered from one data file; the dropdown stays usable

_models: dict[tuple[str, str], Any] = {}
_models_lock = threading.Lock()  # loading and generating: one model call at a time on the CPU


@dataclass
class Transcription:
    """One model's answer to the playground's image."""

    source: str
    text: str = ""
    seconds: float = 0.0
    prompt_tokens: Optional[int] = None
    output_tokens: Optional[int] = None
    error: Optional[str] = None


# --- prompts -------------------------------------------------------------------------------


def list_prompts(prompt_dir: Path = PROMPT_DIR) -> list[str]:
    return sorted(p.stem for p in prompt_dir.glob("*.yaml"))


def read_prompt(name: str, prompt_dir: Path = PROMPT_DIR) -> tuple[str, str]:
    """(text, system) of ``conf/prompt/<name>.yaml``; ("", "") for an unknown name."""
    import yaml

    if name not in list_prompts(prompt_dir):  # also keeps `name` inside prompt_dir
        return "", ""
    raw = yaml.safe_load((prompt_dir / f"{name}.yaml").read_text()) or {}
    return str(raw.get("text") or ""), str(raw.get("system") or "")


def save_prompt(name: str, text: str, system: str = "", prompt_dir: Path = PROMPT_DIR) -> Path:
    """Write a new ``<prompt_dir>/<name>.yaml``; never overwrites one.

    Raises:
        ValueError: a bad or taken name, or an empty text.
    """
    import yaml

    name = (name or "").strip()
    if not _PROMPT_NAME.match(name) or name in _RESERVED:
        raise ValueError(f"bad prompt name {name!r}: use a letter, then letters, digits, '_' or '-' (at most 64)")
    if not (text or "").strip():
        raise ValueError("the prompt text is empty")
    body = {"text": text, **({"system": system} if (system or "").strip() else {})}
    content = "# Saved from the studio playground.\ndefaults:\n  - base_prompt\n\n" + yaml.safe_dump(
        body, allow_unicode=True, sort_keys=False, width=1000
    )
    path = prompt_dir / f"{name}.yaml"
    try:
        with path.open("x", encoding="utf-8") as f:  # "x": refuse an existing file, even in a race
            f.write(content)
    except FileExistsError:
        raise ValueError(f"prompt {name!r} exists already ({path}); pick another name") from None
    log.info("saved prompt %s", path)
    return path


# --- images from a data set ----------------------------------------------------------------


def data_samples(source: str) -> list[tuple[str, str, str]]:
    """(choice label, image path, reference text) per sample of ``source``: a results.json
    (its samples), a Gemma-OCR JSON data file, or a folder of images."""
    path = Path(source).expanduser()
    if path.is_dir():
        images = sorted(p for p in path.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)[:_MAX_SAMPLES]
        return [(str(p.relative_to(path)), str(p), "") for p in images]
    if path.suffix.lower() != ".json" or not path.is_file():
        raise ValueError(f"{source!r}: expected a results.json, a JSON data file or a folder of images")
    raw = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(raw, dict) and isinstance(raw.get("samples"), list):
        rows = [(s.get("id") or s.get("image_path"), s.get("image_path"), s.get("label") or "") for s in raw["samples"]]
    elif isinstance(raw, list):
        rows = [(r.get("img_path"), r.get("img_path"), r.get("ocr_results") or "") for r in raw if isinstance(r, dict)]
    else:
        raise ValueError(f"{source!r} is neither a results file nor a list of samples")
    out = []
    for key, image, label in rows[:_MAX_SAMPLES]:
        if not image:
            continue
        # as the HTML report resolves them: as written (absolute or from the working folder), else beside the file
        image_path = (Path(image) if Path(image).exists() else path.parent / image).resolve()
        text = label if isinstance(label, str) else json.dumps(label, ensure_ascii=False)
        out.append((f"{key}: {text[:40]}", str(image_path), text))
    return out


# --- transcription -------------------------------------------------------------------------


def _generator(family: str, model_path: str):
    """The Generator for ``model_path``, loaded once per (family, path); caller holds the lock."""
    key = (family, model_path)
    if key not in _models:
        from omegaconf import OmegaConf

        from ocrft.config import EvalConfig, ModelConfig, PromptConfig
        from ocrft.evaluation.generation import build_generator

        cfg = OmegaConf.create({
            "model": OmegaConf.structured(ModelConfig(family=family, path=model_path)),
            "prompt": OmegaConf.structured(PromptConfig(text="")),
            "eval": OmegaConf.structured(EvalConfig()),
        })  # fmt: skip
        log.info("playground: loading %s (%s)", model_path, family)
        _models[key] = build_generator(cfg)
    return _models[key]


def transcribe_local(model_path: str, family: str, image: str, prompt: str, *, system: str, max_new_tokens: int) -> Transcription:
    from ocrft.data.images import open_image
    from ocrft.models.collate import Sample

    out = Transcription(source=model_path)
    try:
        with _models_lock:
            generator = _generator(family, model_path)
            generator.collator.system = system or None
            picture = open_image(image)
            start = time.perf_counter()
            out.text = generator.generate([picture], [prompt], max_new_tokens=int(max_new_tokens))[0]
            out.seconds = time.perf_counter() - start
            out.output_tokens = generator.count_tokens(out.text)
            # image tokens included, as an endpoint counts them
            out.prompt_tokens = int(generator.collator([Sample(image=picture, prompt=prompt)])["input_ids"].shape[1])
    except Exception as e:  # noqa: BLE001 - shown in the table, the other models still answer
        log.exception("playground: %s failed", model_path)
        out.error = scrub_text(f"{type(e).__name__}: {e}")
    return out


def transcribe_endpoint(
    provider: str, base_url: str, model: str, api_key: str, *, image: str, prompt: str, system: str,
    temperature: float, max_tokens: int,
) -> Transcription:  # fmt: skip
    """One request through ocrft.evaluation.endpoint's client; ``api_key`` lives only in this call."""
    from ocrft.evaluation.endpoint import EndpointClient, load_provider

    key = (api_key or "").strip() or None
    out = Transcription(source=f"{provider}: {model or '?'}")
    client = None
    try:
        conf = load_provider(provider)
        out.source = f"{provider}: {model or conf.model}"
        if key is None and conf.api_key_required:
            raise ValueError(f"provider {provider} needs an API key: type it into the key field")
        client = EndpointClient(base_url=base_url or conf.base_url, model=model or conf.model, api_key=key,
                                temperature=float(temperature), max_tokens=int(max_tokens), max_retries=2, timeout=120)
        done = client.transcribe(image, prompt, system or None)
        out.text, out.seconds, out.error = done.text, done.latency_s, done.error
        out.prompt_tokens, out.output_tokens = done.usage.get("prompt_tokens"), done.usage.get("completion_tokens")
    except Exception as e:  # noqa: BLE001 - shown in the table, scrubbed of the key
        out.error = f"{type(e).__name__}: {e}"
    finally:
        if client is not None:
            client.close()
    if out.error:
        out.error = scrub_text(out.error, [key] if key else None)
        log.warning("playground: %s: %s", out.source, out.error)
    return out


# --- rendering -----------------------------------------------------------------------------


def _diff_css() -> str:
    """The report's diff rules (ins, del, .sub-r/.sub-h), from its one stylesheet."""
    css = (Path(__file__).resolve().parent.parent / "evaluation" / "templates" / "_style.css").read_text()
    return "\n".join(line for line in css.splitlines() if line.startswith(("ins{", ".sub-r")))


def results_html(rows: list[Transcription], reference: str = "") -> str:
    """A side-by-side table: one column per model; with a reference, CER and the report's diff."""
    from ocrft.evaluation.html import diff_html
    from ocrft.evaluation.metrics import score_sample

    def tokens(n: Optional[int]) -> str:
        return "?" if n is None else str(n)

    cols = []
    for r in rows:
        body = f'<div class="pg-text">{html.escape(r.text)}</div>'
        if r.error:
            body += f'<div class="pg-error err">{html.escape(r.error)}</div>'
        elif reference:
            cer = score_sample(r.text, reference)["cer"]
            body += f'<div class="pg-cer">CER {cer:.3f}</div><div class="pg-diff">{diff_html(reference, r.text)}</div>'
        stats = f'<span class="pg-seconds">{r.seconds:.2f} s</span> · tokens in {tokens(r.prompt_tokens)}, ' \
                f'out <span class="pg-tokens">{tokens(r.output_tokens)}</span>'
        cols.append(f'<td class="pg-col" data-source="{html.escape(r.source)}"><b>{html.escape(r.source)}</b>'
                    f'{body}<div class="pg-stats">{stats}</div></td>')
    ref = f'<p>label: <span class="pg-label">{html.escape(reference)}</span></p>' if reference else ""
    style = f"<style>{_diff_css()}\n.pg-col{{vertical-align:top;padding:6px 12px}}.pg-text{{font-family:ui-monospace,monospace;white-space:pre-wrap}}</style>"
    return f'{style}{ref}<table id="pg-results"><tr>{"".join(cols)}</tr></table>'


# --- the tab -------------------------------------------------------------------------------


def _families() -> list[str]:
    from ocrft.models.registry import FAMILIES

    return sorted(FAMILIES)


def playground_tab(studio_cfg: Any) -> None:
    """Build the Playground's components in the current gr.Blocks context."""
    import gradio as gr

    from ocrft.evaluation.endpoint import known_providers, load_provider

    prompts = list_prompts()
    first = "ocr_line" if "ocr_line" in prompts else (prompts[0] if prompts else None)
    text0, system0 = read_prompt(first) if first else ("", "")
    providers = ["(none)", *known_providers()]

    with gr.Row():
        with gr.Column(scale=1):
            image = gr.Image(label="Image", type="filepath", sources=["upload"], elem_id="pg-image", height=160)
            with gr.Accordion("…or pick one from a data set", open=False, elem_id="pg-data-set"):
                source = gr.Textbox(label="results.json, JSON data file or image folder", elem_id="pg-source")
                load = gr.Button("List samples", elem_id="pg-load", size="sm")
                sample = gr.Dropdown(label="Sample", choices=[], elem_id="pg-sample")
            reference = gr.Textbox(label="Label (optional: CER and diff)", elem_id="pg-reference")
        with gr.Column(scale=1):
            prompt_name = gr.Dropdown(label="Prompt (conf/prompt)", choices=prompts, value=first, elem_id="pg-prompt-name")
            prompt = gr.Textbox(label="Prompt text", value=text0, lines=3, elem_id="pg-prompt")
            system = gr.Textbox(label="System prompt", value=system0, elem_id="pg-system")
            with gr.Row():
                new_name = gr.Textbox(label="Save as conf/prompt/<name>.yaml", elem_id="pg-new-name", scale=3)
                save = gr.Button("Save prompt", elem_id="pg-save", size="sm", scale=1)
            saved = gr.Markdown(elem_id="pg-saved")
    with gr.Row():
        with gr.Column():
            local = gr.Textbox(label="Local models: one model.path a line (asset:demo_base, tiny:qwen2_vl, a run folder)",
                               value="asset:demo_base", lines=2, elem_id="pg-local")
            with gr.Row():
                family = gr.Dropdown(label="Family (for bases and hub ids)", choices=_families(), value="qwen2_vl", elem_id="pg-family")
                max_new = gr.Number(label="Max new tokens", value=64, precision=0, minimum=1, elem_id="pg-max-new")
        with gr.Column():
            provider = gr.Dropdown(label="Endpoint provider", choices=providers, value="(none)", elem_id="pg-provider")
            with gr.Row():
                base_url = gr.Textbox(label="Base URL", elem_id="pg-base-url")
                remote = gr.Textbox(label="Model", elem_id="pg-remote-model")
            # In memory only: an event input, never a gr.State, never saved or logged.
            api_key = gr.Textbox(label="API key (kept in memory only)", type="password", elem_id="pg-key")
            with gr.Row():
                temperature = gr.Number(label="Temperature", value=0.0, minimum=0, elem_id="pg-temperature")
                max_tokens = gr.Number(label="Max tokens", value=256, precision=0, minimum=1, elem_id="pg-max-tokens")
    run = gr.Button("Transcribe", variant="primary", elem_id="pg-run")
    out = gr.HTML(elem_id="pg-out")

    def on_prompt(name: str):
        return read_prompt(name) if name else ("", "")

    def on_save(name: str, text: str, sys_text: str):
        try:
            path = save_prompt(name, text, sys_text)
        except ValueError as e:
            return f"**Not saved:** {e}", gr.update()
        return f"Saved `{path.name}`.", gr.update(choices=list_prompts(), value=path.stem)

    def on_load(path: str):
        try:
            rows = data_samples(path)
        except (ValueError, OSError) as e:
            gr.Warning(str(e))
            return gr.update(choices=[], value=None)
        return gr.update(choices=[(label, json.dumps([img, ref])) for label, img, ref in rows], value=None)

    def on_sample(choice: Optional[str]):
        if not choice:
            return gr.update(), gr.update()
        from ocrft.data.images import open_image

        img, ref = json.loads(choice)
        try:  # a PIL image: gradio serves it from its cache, whatever folder the file is in
            return open_image(img), ref
        except OSError as e:
            gr.Warning(f"cannot open {img}: {e}")
            return gr.update(), ref

    def on_provider(name: str):
        if not name or name == "(none)":
            return "", ""
        conf = load_provider(name)
        return conf.base_url, conf.model

    def on_run(img, text, sys_text, paths, fam, max_new_tokens, prov, url, model, key, temp, max_tok, ref):
        if not img:
            return "<p class='err'>Upload an image or pick a sample first.</p>"
        rows = [transcribe_local(p.strip(), fam, img, text, system=sys_text, max_new_tokens=max_new_tokens or 64)
                for p in (paths or "").splitlines() if p.strip()]
        if prov and prov != "(none)":
            rows.append(transcribe_endpoint(prov, url, model, key, image=img, prompt=text, system=sys_text,
                                            temperature=temp or 0.0, max_tokens=max_tok or 256))
        if not rows:
            return "<p class='err'>Name a local model or pick an endpoint provider.</p>"
        return results_html(rows, ref or "")

    prompt_name.change(on_prompt, prompt_name, [prompt, system])
    save.click(on_save, [new_name, prompt, system], [saved, prompt_name])
    load.click(on_load, source, sample)
    sample.change(on_sample, sample, [image, reference])
    provider.change(on_provider, provider, [base_url, remote])
    run.click(on_run, [image, prompt, system, local, family, max_new, provider, base_url, remote, api_key,
                       temperature, max_tokens, reference], out)
