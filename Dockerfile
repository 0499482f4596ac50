# One image for the bot, the workers and Flower; the command picks the role.
# Serving needs no TensorFlow: the image installs the serving dependencies only (LiteRT runtime).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

RUN useradd --create-home --uid 10001 skinsense \
    && mkdir -p /var/lib/skinsense && chown skinsense /var/lib/skinsense  # beat's schedule (a volume)
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY models ./models
COPY bot ./bot
COPY worker ./worker
COPY skinsense ./skinsense
COPY migrations ./migrations
COPY alembic.ini ./
RUN pip install --upgrade pip && pip install . && rm -rf models/runs

USER skinsense
CMD ["skinsense", "--help"]
