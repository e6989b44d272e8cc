"""Model cards: what a registered model version is for, what it learnt from, why it was chosen, how well it did.

A card has two forms. Its facts (``facts``; format ``glucokit-model-card/1``)
are data, not prose: written into ``ml_model.card`` with the registration and
read by the API. Its text (``render``) is those facts in English or German,
with every sentence taken from ``disclaimer.MODEL_CARD_WORDING`` and the
out-of-scope use quoted from the disclaimer itself. The retrain stores both
beside the version's files (``save``): ``card.json`` (the facts) and one
``card.<language>.md`` per language.

The facts come from the registry row (algorithm, inputs, data window, headline
metrics with band coverage per horizon and glucose range) and, for a trained
model, from the training summary the version's ``metadata.json`` holds (the
candidates' validation scores, the champion and the reason the
Diebold-Mariano rule gave, per-horizon test errors, coverage per horizon and
range, windows per split). Versions registered before model cards have no
summary in the database: ``facts(..., None)`` builds theirs from the row alone.
"""

from __future__ import annotations

import statistics
from datetime import datetime
from typing import Any, Final, Protocol

import orjson

from glucokit.db.sessions import Connection
from glucokit.disclaimer import DISCLAIMER_VERSION, LANGUAGES, MODEL_CARD_WORDING, Language, disclaimer_text
from glucokit.forecast.metrics import RANGES
from glucokit.forecast.windows import HORIZON_MINUTES
from glucokit.modelops.model_store import ModelStore

CARD_FORMAT: Final = "glucokit-model-card/1"
CARD_FILE: Final = "card.json"


def card_text_file(language: Language) -> str:
    return f"card.{language}.md"


class Described(Protocol):
    """What the registry says of a version: ``registry.Candidate`` before registration, ``ModelVersion`` after."""

    @property
    def algorithm(self) -> str: ...

    @property
    def features(self) -> Any: ...

    @property
    def metrics(self) -> dict[str, Any]: ...

    @property
    def data_from(self) -> datetime: ...

    @property
    def data_to(self) -> datetime: ...

    @property
    def is_fallback(self) -> bool: ...


def _selection(training: dict[str, Any]) -> dict[str, Any]:
    return {
        "champion": training["champion"],
        "validation_rmse": {name: statistics.fmean(m["rmse"]) for name, m in training["validation"].items()},
        "reason": training.get("champion_reason"),
    }


def _test(training: dict[str, Any]) -> dict[str, Any]:
    champion = training["test"][training["champion"]]
    return {
        "windows": champion["windows"],
        "rmse": champion["rmse"],
        "mae": champion["mae"],
        "persistence_rmse": training["test"]["persistence"]["rmse"],
        "coverage": champion["coverage"],
        "coverage_by_range": champion["coverage_by_range"],
        "range_counts": champion["range_counts"],
    }


def facts(version: str, model: Described, metadata: dict[str, Any] | None) -> dict[str, Any]:
    """The card's facts for ``version``: from the registry's description and the ``metadata.json`` written with it
    (None: not at hand, for a version registered before model cards)."""
    training = None if metadata is None else metadata.get("training")
    headline = model.metrics
    return {
        "format": CARD_FORMAT,
        "version": version,
        "algorithm": model.algorithm,
        "features": list(model.features),
        "fallback": model.is_fallback,
        "fallback_reason": None if metadata is None else metadata.get("fallback"),
        "recorded": metadata is not None,
        "disclaimer_version": DISCLAIMER_VERSION,
        "data": {
            "from": model.data_from.isoformat(),
            "to": model.data_to.isoformat(),
            "days": round((model.data_to - model.data_from).total_seconds() / 86400, 1),
            "windows": None if training is None else training["windows"],
            "dropped": None if training is None else training["dropped"],
        },
        "selection": None if training is None else _selection(training),
        "test": None if training is None else _test(training),
        "coverage_nominal": None if training is None else training["coverage"],
        "headline": {
            "rmse_30": headline.get("rmse_30"),
            "rmse_60": headline.get("rmse_60"),
            "coverage": {str(minutes): headline.get(f"coverage_{minutes}") for minutes in HORIZON_MINUTES},
            "coverage_by_range": {name: headline.get(f"coverage_{name}") for name in RANGES},
        },
    }


def _number(value: float | None, words: dict[str, str], digits: int = 1) -> str:
    return words["not_measured"] if value is None else f"{value:.{digits}f}"


def _share(value: float | None, words: dict[str, str]) -> str:
    return words["not_measured"] if value is None else f"{value:.0%}"


def _coverage_rows(card: dict[str, Any], words: dict[str, str]) -> list[str]:
    test = card["test"]
    if test is not None and test["coverage"] is not None:
        return [
            f"| {minutes} | {_share(test['coverage'][h], words)} | "
            + " | ".join(_share(test["coverage_by_range"][name][h], words) for name in RANGES)
            + " |"
            for h, minutes in enumerate(HORIZON_MINUTES)
        ]
    pooled = card["headline"]["coverage_by_range"]
    return [
        f"| {minutes} | {_share(card['headline']['coverage'][str(minutes)], words)} | "
        + " | ".join(_share(pooled[name], words) for name in RANGES)
        + " |"
        for minutes in HORIZON_MINUTES
    ]


def _unmeasured(card: dict[str, Any]) -> list[str]:
    test = card["test"]
    if test is not None and test["range_counts"] is not None:
        return [name for name in RANGES if not any(test["range_counts"][name])]
    if card["fallback"]:
        return []
    return [name for name in RANGES if card["headline"]["coverage_by_range"][name] is None]


def render(card: dict[str, Any], language: Language) -> str:
    """The card as a Markdown document in ``language``."""
    words = MODEL_CARD_WORDING[language]
    data, selection, test = card["data"], card["selection"], card["test"]
    lines = [
        f"# {words['title'].format(version=card['version'])}",
        "",
        words["model"].format(
            algorithm=card["algorithm"],
            features=", ".join(card["features"]),
            disclaimer_version=card["disclaimer_version"],
        ),
        "",
        f"## {words['intended_use']}",
        "",
        words["intended_use_text"],
        "",
        f"## {words['out_of_scope']}",
        "",
        disclaimer_text(card["disclaimer_version"], language),
        "",
        f"## {words['data']}",
        "",
        words["data_window"].format(start=data["from"], end=data["to"], days=data["days"]),
    ]
    if data["windows"] is not None:
        lines.append(words["data_windows"].format(**data["windows"]))
    if data["dropped"]:
        dropped = ", ".join(f"{reason} {count}" for reason, count in sorted(data["dropped"].items()))
        lines.append(words["data_dropped"].format(dropped=dropped))
    lines += ["", f"## {words['selection']}", ""]
    if selection is not None:
        scores = ", ".join(f"{name} {score:.2f}" for name, score in selection["validation_rmse"].items())
        lines.append(words["selection_scores"].format(scores=scores))
        lines.append(words["selection_chosen"].format(champion=selection["champion"], reason=selection["reason"]))
    elif card["fallback"] and card["fallback_reason"]:
        lines.append(words["selection_fallback"].format(reason=card["fallback_reason"]))
    else:
        lines.append(words["selection_unrecorded"])
    lines += ["", f"## {words['metrics']}", ""]
    if test is not None:
        lines += [words["metrics_windows"].format(windows=test["windows"]), "", words["metrics_header"]]
        lines.append("|" + "---|" * 4)
        lines += [
            f"| {minutes} | {test['rmse'][h]:.1f} | {test['mae'][h]:.1f} | {test['persistence_rmse'][h]:.1f} |"
            for h, minutes in enumerate(HORIZON_MINUTES)
        ]
        lines += ["", words["metrics_spread"].format(low=f"{min(test['rmse']):.1f}", high=f"{max(test['rmse']):.1f}")]
    elif card["headline"]["rmse_30"] is not None:
        headline = card["headline"]
        lines.append(
            words["metrics_headline"].format(
                rmse_30=_number(headline["rmse_30"], words), rmse_60=_number(headline["rmse_60"], words)
            )
        )
    else:
        lines.append(words["metrics_none"])
    if not card["fallback"]:
        nominal = card["coverage_nominal"]
        lines += ["", f"## {words['coverage']}", ""]
        if nominal is not None:
            lines += [words["coverage_nominal"].format(nominal=f"{nominal:.0%}"), ""]
        lines += [words["coverage_header"], "|" + "---|" * 5, *_coverage_rows(card, words)]
        if test is not None and test["range_counts"] is not None:
            counts = ", ".join(f"{words[f'range_{name}']} {sum(test['range_counts'][name])}" for name in RANGES)
            lines += ["", words["coverage_counts"].format(counts=counts)]
    limits = [words["limit_person"], words["limit_ranges"], words["limit_gaps"], words["limit_sensor"]]
    limits += [words["limit_unmeasured"].format(range=words[f"range_{name}"]) for name in _unmeasured(card)]
    if card["fallback"]:
        limits.append(words["limit_fallback"])
    lines += ["", f"## {words['limits']}", "", *(f"- {limit}" for limit in limits)]
    return "\n".join(lines) + "\n"


def save(store: ModelStore, conn: Connection, folder: str, card: dict[str, Any]) -> None:
    """Stores the card beside the version's files: its facts and its text in every language."""
    store.put(conn, folder + CARD_FILE, orjson.dumps(card, option=orjson.OPT_INDENT_2), "application/json")
    for language in LANGUAGES:
        store.put(conn, folder + card_text_file(language), render(card, language).encode(), "text/plain")
