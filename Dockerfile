# ocrft serving image: a trained run behind the OpenAI chat-completions API, on CPU.
#   docker build -t ocrft .
#   docker run --rm -p 127.0.0.1:8000:8000 -v "$PWD/outputs/train/<run>:/run:ro" ocrft
#   curl http://127.0.0.1:8000/health
# Inside the container the server binds 0.0.0.0 (the only way the published port reaches
# it); publish it on the host's loopback as above (`-p 127.0.0.1:8000:8000`), or set a key:
#   docker run -e OCRFT_SERVE_KEY=... ... ocrft python -m ocrft task=serve model.path=/run serve.host=0.0.0.0 serve.api_key_env=OCRFT_SERVE_KEY
# See docs/endpoints.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# torch first, from PyTorch's CPU wheel index: the default PyPI wheel pulls several GB of
# CUDA libraries. constraints.txt pins torch==2.13.0+cpu, which only that index has.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

# Dependencies before the source, so editing code does not reinstall them.
COPY pyproject.toml constraints.txt README.md ./
COPY ocrft ocrft
COPY hydra_plugins hydra_plugins
COPY conf conf
# Editable: `python -m ocrft` finds conf/ beside the package, as in a checkout.
RUN pip install -c constraints.txt --extra-index-url https://download.pytorch.org/whl/cpu -e .

# Run as an unprivileged user; the run record (outputs/) is written under /app.
RUN useradd --create-home --uid 1000 ocrft && mkdir -p /app/outputs && chown ocrft /app /app/outputs
USER ocrft

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"

# Mount the trained run (adapter + its config, or merged weights) at /run. A run that holds
# only an adapter also needs its base model: mount the Hugging Face cache too
# (-v ~/.cache/huggingface:/home/ocrft/.cache/huggingface:ro -e HF_HUB_OFFLINE=1).
CMD ["python", "-m", "ocrft", "task=serve", "model.path=/run", "serve.host=0.0.0.0"]
