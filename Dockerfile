# Production image of the Mangalm Sales Assistant: API workers and queue workers run this image
# with different commands (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    MANGALM_HOME=/var/lib/mangalm
# Build tools only for wheels that compile (llama-cpp-python when the llm-local extra is used).
ARG EXTRAS=""
ARG CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF"
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY assistant assistant
COPY tools tools
COPY forecasting forecasting
COPY retrieval retrieval
COPY channels channels
COPY prompts prompts
COPY api api
RUN pip install ".${EXTRAS}" && useradd --system --home /var/lib/mangalm mangalm \
    && mkdir -p /var/lib/mangalm && chown mangalm /var/lib/mangalm
USER mangalm
EXPOSE 8000
CMD ["mangalm", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "4"]
