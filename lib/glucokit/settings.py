"""The settings of the workers and the API: read from the environment once, typed and checked (pydantic-settings).

Each entry point loads its own class (``load(RetrainJobSettings)``); the classes share their fields
through a few bases, so a variable means the same everywhere it is read. A missing or malformed value
is a ``SettingsError`` that names the variable and what it must be, in one line. README.md's settings
table is ``settings_table()``, and a test holds the two equal.

This module sits just above the ML core (it checks model families and horizons against it) and below
everything that builds from settings: the model store, the jobs, the services.
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self, TypeVar, Union, get_args, get_origin

import torch
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from glucokit.errors import GlucokitError
from glucokit.forecast import HORIZON_MINUTES
from glucokit.forecast.pipeline import FAMILIES, TrainingSettings
from glucokit.forecast.windows import check_horizons

# Clock skew tolerated on a token's exp, iat and nbf: Supabase access tokens (the API) and Google's OIDC tokens
# (the retrain service) alike.
LEEWAY_S: Final = 30


class SettingsError(GlucokitError):
    """A setting is missing or malformed; the message names the variable and what it must be, in one line."""


# Set while ``load`` reads a mapping it was given in place of the process's environment.
_given: ContextVar[bool] = ContextVar("glucokit_settings_given", default=False)


class _Settings(BaseSettings):
    # The variables' names are exactly the aliases; an empty variable counts as unset, as it always has.
    model_config = SettingsConfigDict(case_sensitive=True, env_ignore_empty=True, extra="ignore", frozen=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment only (Cloud Run has no .env file); a mapping given to ``load`` replaces it whole.
        return (init_settings,) if _given.get() else (env_settings,)


def _listed(value: object) -> object:
    """A comma-separated variable as its items; other values (from Python) as they are."""
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


Listed = Annotated[tuple[str, ...], NoDecode]  # comma-separated, not JSON as pydantic-settings would read it


class LogSettings(_Settings):
    """How the entry points log (``glucokit.logs``)."""

    log_format: Literal["auto", "json", "text"] = Field(
        "auto",
        alias="GLUCOKIT_LOG_FORMAT",
        description="`json`: JSON lines for Cloud Logging; `text`: readable lines; `auto`: JSON on Cloud Run",
    )
    cloud_run_service: str | None = Field(
        None, alias="K_SERVICE", description="set by Cloud Run in a service: logs are JSON lines (with `auto`)"
    )
    cloud_run_job: str | None = Field(
        None, alias="CLOUD_RUN_JOB", description="set by Cloud Run in a job: logs are JSON lines (with `auto`)"
    )
    google_cloud_project: str | None = Field(
        None,
        alias="GOOGLE_CLOUD_PROJECT",
        description="the project's id: JSON lines of a request carry its Cloud Trace id (X-Cloud-Trace-Context)",
    )

    @property
    def json_lines(self) -> bool:
        if self.log_format == "auto":
            return bool(self.cloud_run_service or self.cloud_run_job)
        return self.log_format == "json"


class DatabaseSettings(LogSettings):
    database_url: SecretStr = Field(
        alias="DATABASE_URL",
        description="the database (libpq URL); the workers' login may `set role glucokit_worker`, the API's"
        " `set role authenticated`",
    )


class SupabaseSettings(_Settings):
    supabase_url: str | None = Field(
        None,
        alias="SUPABASE_URL",
        description="the project's URL: the API checks tokens against its JWKS; the jobs keep model files in its"
        " Storage (with SUPABASE_ANON_KEY and SUPABASE_JWT_SECRET)",
    )
    supabase_anon_key: SecretStr | None = Field(
        None, alias="SUPABASE_ANON_KEY", description="the project's anon (publishable) key, sent to Storage as `apikey`"
    )
    supabase_jwt_secret: SecretStr | None = Field(
        None,
        alias="SUPABASE_JWT_SECRET",
        description="the project's JWT secret: the API checks HS256 tokens with it, the jobs sign their short-lived"
        " Storage tokens (keep it in a secret manager)",
    )


class StoreSettings(SupabaseSettings):
    """Where the model files are: the project's Storage (all three Supabase settings) or a local directory."""

    model_dir: Path | None = Field(
        None,
        alias="GLUCOKIT_MODEL_DIR",
        description="without Storage: the local model store's directory (unset: `.glucokit/storage`)",
    )

    @model_validator(mode="before")
    @classmethod
    def _all_or_none(cls, data: Any) -> Any:
        # Checked before any field, so that a half-configured store is what a worker reports first.
        names = [cls.model_fields[name].alias for name in SupabaseSettings.model_fields]
        missing = [name for name in names if isinstance(data, Mapping) and not data.get(name)]
        if 0 < len(missing) < len(names):
            raise ValueError(
                f"the Supabase model store needs {', '.join(str(name) for name in missing)} too (set all of"
                f" {', '.join(str(name) for name in names)}, or none for the local store)"
            )
        return data


class JobSettings(StoreSettings, DatabaseSettings):
    task_index: int = Field(0, ge=0, alias="CLOUD_RUN_TASK_INDEX", description="this task's shard (set by Cloud Run)")
    task_count: int = Field(1, ge=1, alias="CLOUD_RUN_TASK_COUNT", description="the number of tasks (set by Cloud Run)")
    job_seconds: float | None = Field(
        None,
        gt=0,
        alias="GLUCOKIT_JOB_SECONDS",
        description="take no new person after this many seconds (unset: until every due person was visited)",
    )

    @model_validator(mode="after")
    def _task_in_shards(self) -> Self:
        if self.task_index >= self.task_count:
            raise ValueError(
                f"CLOUD_RUN_TASK_INDEX={self.task_index} is not below CLOUD_RUN_TASK_COUNT={self.task_count}"
            )
        return self


class RetrainJobSettings(JobSettings):
    model_families: Listed = Field(
        FAMILIES,
        alias="GLUCOKIT_MODEL_FAMILIES",
        description=f"the model families to train, comma-separated, from {','.join(FAMILIES)}; the champion is"
        " picked among them",
    )

    retrain_batch: int = Field(
        16,
        ge=1,
        alias="GLUCOKIT_RETRAIN_BATCH",
        description="persons a task claims and trains at once, their networks as one stack; 1: one at a time",
    )
    training_device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        alias="GLUCOKIT_TRAINING_DEVICE",
        description="where the networks train: `cpu`, `cuda`, or `auto` (CUDA when torch finds a device); on CUDA"
        " the weights may round differently from the CPU's",
    )

    _families = field_validator("model_families", mode="before")(_listed)

    @field_validator("model_families")
    @classmethod
    def _known_families(cls, families: tuple[str, ...]) -> tuple[str, ...]:
        TrainingSettings(families=families)  # its ValueError says which families exist
        return families

    @field_validator("training_device")
    @classmethod
    def _device_present(cls, device: str) -> str:
        if device == "cuda" and not torch.cuda.is_available():
            raise ValueError("torch finds no CUDA device here (use cpu or auto)")
        return device

    @property
    def training(self) -> TrainingSettings:
        return TrainingSettings(families=self.model_families)

    @property
    def device(self) -> str:
        """The device the networks train on."""
        if self.training_device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.training_device


class ForecastJobSettings(JobSettings):
    forecast_horizons: Annotated[tuple[int, ...], NoDecode] = Field(
        HORIZON_MINUTES,
        alias="GLUCOKIT_FORECAST_HORIZONS",
        description="the horizons to write, comma-separated minutes",
    )

    @field_validator("forecast_horizons", mode="before")
    @classmethod
    def _minutes(cls, value: object) -> object:
        minutes = _listed(value)
        if not isinstance(minutes, tuple) or not all(str(item).isdigit() for item in minutes):
            raise ValueError(_HORIZONS_WANTED)
        try:
            return check_horizons([int(item) for item in minutes])
        except ValueError:
            raise ValueError(_HORIZONS_WANTED) from None


_HORIZONS_WANTED: Final = f"give minutes from {', '.join(map(str, HORIZON_MINUTES))}, separated by commas"


class ServiceSettings(DatabaseSettings):
    port: int = Field(8080, ge=0, le=65535, alias="PORT", description="the port to listen on (set by Cloud Run)")


class ApiServiceSettings(SupabaseSettings, ServiceSettings):
    api_pool: int = Field(
        8,
        ge=1,
        alias="GLUCOKIT_API_POOL",
        description="the API's database connections per pool (two pools: async reads, and the thread pool's routes)",
    )


class RetrainAuthSettings(_Settings):
    """Who may call the retrain service: Google-signed OIDC tokens of these accounts, for this audience."""

    retrain_audience: Listed = Field(
        (),
        alias="GLUCOKIT_RETRAIN_AUDIENCE",
        description="the audience the OIDC tokens must name: the service's URL; several, comma-separated",
    )
    retrain_invokers: Listed = Field(
        (),
        alias="GLUCOKIT_RETRAIN_INVOKERS",
        description="the service accounts allowed in (the tokens' verified `email`), comma-separated",
    )
    retrain_insecure_local: bool = Field(
        False,
        alias="GLUCOKIT_RETRAIN_INSECURE_LOCAL",
        description="local development only, instead of an audience and invokers: no token is checked, and the"
        " service listens on 127.0.0.1 only",
    )

    _audience = field_validator("retrain_audience", mode="before")(_listed)

    @field_validator("retrain_invokers", mode="before")
    @classmethod
    def _emails(cls, value: object) -> object:
        return _listed(value.lower() if isinstance(value, str) else value)

    @field_validator("retrain_insecure_local", mode="before")
    @classmethod
    def _one(cls, value: object) -> object:
        if isinstance(value, str) and value != "1":
            raise ValueError("set it to 1 (local development, no authentication) or unset it")
        return value

    @model_validator(mode="after")
    def _authenticated_or_local(self) -> Self:
        if self.retrain_insecure_local:
            if self.retrain_audience or self.retrain_invokers:
                raise ValueError(
                    "GLUCOKIT_RETRAIN_INSECURE_LOCAL=1 turns authentication off: unset it, or"
                    " GLUCOKIT_RETRAIN_AUDIENCE and GLUCOKIT_RETRAIN_INVOKERS"
                )
        elif not self.retrain_audience:
            raise ValueError(
                "GLUCOKIT_RETRAIN_AUDIENCE is required: the service's URL, which the OIDC tokens name as their"
                " audience (or GLUCOKIT_RETRAIN_INSECURE_LOCAL=1 for local development, without authentication)"
            )
        elif not self.retrain_invokers:
            raise ValueError(
                "GLUCOKIT_RETRAIN_INVOKERS is required: the emails of the service accounts that push, schedule and"
                " queue tasks, comma-separated"
            )
        for email in self.retrain_invokers:
            if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
                raise ValueError(f"GLUCOKIT_RETRAIN_INVOKERS: {email!r} is not a service account email")
        return self


class RetrainServiceSettings(ServiceSettings, RetrainAuthSettings):
    pass


# Every entry point and the settings it reads: the README's "read by" column.
ENTRY_POINTS: Final[Mapping[str, type[_Settings]]] = {
    "api_service": ApiServiceSettings,
    "retrain_service": RetrainServiceSettings,
    "retrain_job": RetrainJobSettings,
    "forecast_job": ForecastJobSettings,
}

S = TypeVar("S", bound=_Settings)


def load(kind: type[S], environ: Mapping[str, str] | None = None) -> S:
    """``kind`` read from ``environ`` (default: the process's environment); raises SettingsError."""
    try:
        if environ is None:
            return kind()
        given = _given.set(True)
        try:
            return kind(**{name: value for name, value in environ.items() if value})  # empty counts as unset
        finally:
            _given.reset(given)
    except ValidationError as invalid:
        raise SettingsError("; ".join(_explain(kind, error) for error in invalid.errors())) from None


def _explain(kind: type[_Settings], error: Any) -> str:
    if not error["loc"]:  # a check across variables: its message names them
        return str(error["ctx"]["error"])
    name = str(error["loc"][0])
    if error["type"] == "missing":
        return f"{name} is required"
    why = str(error["ctx"]["error"]) if error["type"] == "value_error" else error["msg"][:1].lower() + error["msg"][1:]
    field = next(field for field in kind.model_fields.values() if field.alias == name)
    if _secret(field.annotation):
        return f"{name}: {why}"  # never echo a secret
    return f"{name}={error['input']!r}: {why}"


def _secret(annotation: object) -> bool:
    return annotation is SecretStr or SecretStr in get_args(annotation)


# --- the README's table ---------------------------------------------------------------------


def _kind(annotation: object) -> str:
    if get_origin(annotation) in (Union, types.UnionType):
        (annotation,) = (arg for arg in get_args(annotation) if arg is not type(None))
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) is Literal:
        return " \\| ".join(f"`{choice}`" for choice in get_args(annotation))
    if get_origin(annotation) is tuple:
        return f"list of {_kind(get_args(annotation)[0])}"
    names = {str: "text", int: "integer", float: "seconds", bool: "`1`", Path: "path", SecretStr: "secret"}
    return names[annotation]  # type: ignore[index]


def _default(value: object) -> str:
    if value is None or value == ():
        return "unset"
    if isinstance(value, tuple):
        return f"`{','.join(map(str, value))}`"
    if value is False:
        return "unset"
    return f"`{value}`"


def settings_table() -> str:
    """README.md's settings table, in Markdown: one row per variable, in the order the classes declare them."""
    fields: dict[str, FieldInfo] = {}
    readers: dict[str, list[str]] = {}
    for entry_point, kind in ENTRY_POINTS.items():
        for field in kind.model_fields.values():
            fields.setdefault(str(field.alias), field)
            readers.setdefault(str(field.alias), []).append(entry_point)
    lines = ["| variable | type | default | read by | meaning |", "|---|---|---|---|---|"]
    for name, field in fields.items():
        default = "required" if field.is_required() else _default(field.default)
        lines.append(
            f"| `{name}` | {_kind(field.annotation)} | {default} | {', '.join(readers[name])} | {field.description} |"
        )
    return "\n".join(lines) + "\n"
