"""The entry points' settings: one line naming the variable for a bad value, and README.md's table."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from glucokit.errors import GlucokitError
from glucokit.project import PROJECT_DIR
from glucokit.settings import (
    ApiServiceSettings,
    ForecastJobSettings,
    RetrainJobSettings,
    SettingsError,
    load,
    settings_table,
)

DATABASE = {"DATABASE_URL": "postgresql://worker:hunter2@db.example/postgres"}


def test_the_readme_table_is_the_settings_classes() -> None:
    readme = (PROJECT_DIR / "README.md").read_text()
    table = re.search(r"<!-- settings table: begin -->\n(.*?)<!-- settings table: end -->", readme, re.DOTALL)
    assert table is not None, "README.md has no settings table"
    assert table.group(1) == settings_table(), "regenerate README.md's table with glucokit.settings.settings_table()"


def test_defaults_and_values_are_read_as_before() -> None:
    job = load(RetrainJobSettings, DATABASE)
    assert (job.task_index, job.task_count, job.job_seconds, job.model_dir) == (0, 1, None, None)
    assert job.training.families == ("persistence", "ar2", "ridge", "network")
    api = load(ApiServiceSettings, DATABASE | {"PORT": "9000", "GLUCOKIT_API_POOL": "", "SUPABASE_URL": ""})
    assert (api.port, api.api_pool, api.supabase_url) == (9000, 8, None)  # empty means unset, as it always has
    forecast = load(
        ForecastJobSettings,
        DATABASE | {"GLUCOKIT_FORECAST_HORIZONS": " 30,5,30", "CLOUD_RUN_TASK_INDEX": "2", "CLOUD_RUN_TASK_COUNT": "3"},
    )
    assert (forecast.forecast_horizons, forecast.task_index) == ((5, 30), 2)
    assert load(RetrainJobSettings, DATABASE | {"GLUCOKIT_MODEL_FAMILIES": "ridge, ar2"}).model_families == (
        "ridge",
        "ar2",
    )


@pytest.mark.parametrize(
    ("kind", "environ", "error"),
    [
        (RetrainJobSettings, {}, "DATABASE_URL is required"),
        (
            ForecastJobSettings,
            DATABASE | {"CLOUD_RUN_TASK_INDEX": "one"},
            "CLOUD_RUN_TASK_INDEX='one': input should be a valid integer, unable to parse string as an integer",
        ),
        (ForecastJobSettings, DATABASE | {"CLOUD_RUN_TASK_COUNT": "0"}, "CLOUD_RUN_TASK_COUNT='0': input should be"),
        (
            RetrainJobSettings,
            DATABASE | {"CLOUD_RUN_TASK_INDEX": "4", "CLOUD_RUN_TASK_COUNT": "4"},
            "CLOUD_RUN_TASK_INDEX=4 is not below CLOUD_RUN_TASK_COUNT=4",
        ),
        (RetrainJobSettings, DATABASE | {"GLUCOKIT_JOB_SECONDS": "soon"}, "GLUCOKIT_JOB_SECONDS='soon': input should"),
        (ApiServiceSettings, DATABASE | {"PORT": "http"}, "PORT='http': input should be a valid integer"),
        (ApiServiceSettings, DATABASE | {"GLUCOKIT_LOG_FORMAT": "yaml"}, "GLUCOKIT_LOG_FORMAT='yaml': input should be"),
        (
            ForecastJobSettings,
            DATABASE | {"GLUCOKIT_FORECAST_HORIZONS": "5,ten"},
            "GLUCOKIT_FORECAST_HORIZONS='5,ten': give minutes from 5, 10,",
        ),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(
    kind: type[RetrainJobSettings | ForecastJobSettings | ApiServiceSettings], environ: dict[str, str], error: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        load(kind, environ)
    assert isinstance(refused.value, GlucokitError)
    assert str(refused.value).startswith(error)
    assert "\n" not in str(refused.value)


def test_several_bad_values_are_named_together_and_secrets_never_echoed() -> None:
    with pytest.raises(SettingsError) as refused:
        load(ApiServiceSettings, {"PORT": "-1", "GLUCOKIT_API_POOL": "0"})
    assert str(refused.value) == (
        "DATABASE_URL is required; PORT='-1': input should be greater than or equal to 0;"
        " GLUCOKIT_API_POOL='0': input should be greater than or equal to 1"
    )
    with pytest.raises(SettingsError) as secret:
        load(ApiServiceSettings, {"DATABASE_URL": ["postgresql://hunter2"]})  # type: ignore[dict-item]
    assert str(secret.value).startswith("DATABASE_URL: ")
    assert "hunter2" not in str(secret.value)


@pytest.mark.parametrize(
    ("worker", "environ", "error"),
    [
        ("forecast_job", {"CLOUD_RUN_TASK_INDEX": "x"}, "CLOUD_RUN_TASK_INDEX='x': input should be a valid integer"),
        ("retrain_job", {"GLUCOKIT_JOB_SECONDS": "-5"}, "GLUCOKIT_JOB_SECONDS='-5': input should be greater than 0"),
        ("api_service", {"GLUCOKIT_API_POOL": "many"}, "GLUCOKIT_API_POOL='many': input should be a valid integer"),
        ("retrain_service", {"PORT": "http"}, "PORT='http': input should be a valid integer"),
    ],
)
def test_a_worker_refuses_a_bad_value_with_exit_2_and_no_traceback(
    worker: str, environ: dict[str, str], error: str
) -> None:
    result = subprocess.run(
        [sys.executable, str(PROJECT_DIR / "workers" / f"{worker}.py")],
        capture_output=True, text=True, timeout=120, check=False,
        env=os.environ | DATABASE | {"GLUCOKIT_RETRAIN_INSECURE_LOCAL": "1"} | environ,
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith(f"{worker}: {error}")
    assert result.stderr.count("\n") == 1, result.stderr
