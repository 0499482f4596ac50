"""Every setting in one place, read from the environment (prefix SKINSENSE_) or a .env file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SKINSENSE_", env_file=".env", extra="ignore")

    data_dir: Path | None = None
    imagenet_weights: Path | None = None


@lru_cache
def get_settings() -> Settings:
    return Settings()
