"""Simulated CGM data: simglucose's UVa/Padova T1D virtual patients written as FHIR collection bundles.

Each virtual patient wears a GuardianRT CGM (one reading every 5 minutes) and an
Insulet pump driven by simglucose's basal-bolus controller, and eats the random
meals of a seeded ``RandomScenario``. One patient becomes one ``Bundle`` of type
``collection`` holding CGM readings, carbohydrate intakes and insulin deliveries
as glucokit Observations with no subject: glucokit binds a bundle to a person
when it ingests it.

Output is reproducible: the same (patients, days, seed, start) gives the same
bundles, byte for byte once written (fixed seeds, uuid5 ids, no wall-clock time).
Simulated data are for testing software, not for any clinical use.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib.resources
import importlib.util
import io
import logging
import math
import multiprocessing
import os
import types
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Final
from uuid import NAMESPACE_URL, uuid5

import orjson

from glucokit.errors import GlucokitError
from glucokit.fhir.resources import instant, observation
from glucokit.units import CARBOHYDRATE_CODE, CGM_CODE, INSULIN_CODE, KINDS, LOINC, SNOMED

# simglucose's 30 virtual patients, interleaved by group (adolescent#001,
# adult#001, child#001, adolescent#002, ...) so that the first N are a mix.
PATIENT_ORDER: Final[tuple[str, ...]] = tuple(
    f"{group}#{number:03d}" for number in range(1, 11) for group in ("adolescent", "adult", "child")
)
DEFAULT_START: Final = datetime(2026, 10, 1, tzinfo=UTC)
SOURCE_SYSTEM: Final = "urn:glucokit:simglucose"
SENSOR: Final = "GuardianRT"
PUMP: Final = "Insulet"
CGM_DEVICE: Final = f"simglucose {SENSOR} (simulated)"
PUMP_DEVICE: Final = f"simglucose {PUMP} (simulated)"
# Real CGMs report whole mg/dL between 40 and 400 and show LOW/HIGH outside;
# simglucose's GuardianRT clamps to 39-600 only, so readings are clamped here.
CGM_RANGE_MG_DL: Final = (Decimal(40), Decimal(400))
# simglucose itself ends an episode below 10 mg/dL: the model has left physiology.
MIN_BG_MG_DL: Final = 10.0

_CGM = KINDS[(LOINC, CGM_CODE)]
_CARBS = KINDS[(LOINC, CARBOHYDRATE_CODE)]
_INSULIN = KINDS[(SNOMED, INSULIN_CODE)]
_NAMESPACE: Final = uuid5(NAMESPACE_URL, SOURCE_SYSTEM)


@dataclass(frozen=True)
class PatientSeeds:
    """The seeds of one patient's run, derived from the run seed and the patient's position."""

    scenario: int
    sensor: int


@dataclass(frozen=True)
class _Job:
    name: str
    seeds: PatientSeeds
    start: datetime  # naive UTC: simglucose's RandomScenario cannot compare aware datetimes
    duration: timedelta


@dataclass(frozen=True)
class Trace:
    """simglucose's results for one patient, as plain numbers, one entry per CGM sample step.

    ``bg`` and ``cgm`` have one value per time, the start included. ``carbs`` and
    ``insulin`` have one value per step, the step that begins at the same index
    in ``times``: simglucose reports both as per-minute rates averaged over the
    step; here they are already amounts per step (g, [iU]).
    """

    name: str
    times: tuple[datetime, ...]
    bg: tuple[float, ...]
    cgm: tuple[float, ...]
    carbs: tuple[float, ...]
    insulin: tuple[float, ...]


@dataclass(frozen=True)
class SimulatedPatient:
    """One virtual patient's run: its bundle, or why it was dropped."""

    name: str
    seeds: PatientSeeds
    start: datetime
    end: datetime
    bundle: dict[str, Any] | None  # None when dropped
    dropped: str | None = None  # why the trace was dropped

    @property
    def file_stem(self) -> str:
        return self.name.replace("#", "-")


def patient_seeds(seed: int, index: int) -> PatientSeeds:
    """Seeds for the patient at ``index``: a hash, so neighbouring run seeds give unrelated streams.

    numpy's RandomState takes 0..2**32-1, hence 4 bytes of SHA-256.
    """

    def derive(role: str) -> int:
        digest = hashlib.sha256(f"glucokit.simulate/{seed}/{index}/{role}".encode()).digest()
        return int.from_bytes(digest[:4], "big")

    return PatientSeeds(scenario=derive("scenario"), sensor=derive("sensor"))


def drop_reason(times: Sequence[datetime], bg: Sequence[float]) -> str | None:
    """Why a blood-glucose trace is not worth keeping, or None: below 10 mg/dL (or not a number) anywhere."""
    for moment, value in zip(times, bg, strict=True):
        if not math.isfinite(value):
            return f"blood glucose is not a number at {instant(moment)}"
        if value < MIN_BG_MG_DL:
            return f"blood glucose {value:.2f} mg/dL is below {MIN_BG_MG_DL:g} mg/dL at {instant(moment)}"
    return None


def simulate(patients: int, days: float, *, seed: int, start: datetime = DEFAULT_START) -> list[SimulatedPatient]:
    """Simulate the first ``patients`` of PATIENT_ORDER for ``days`` from ``start``, in parallel processes.

    One result per patient, in PATIENT_ORDER; a dropped patient has no bundle and
    says why. Workers are spawned, so a script calling this needs the usual
    ``if __name__ == "__main__":`` guard.
    """
    if isinstance(patients, bool) or not isinstance(patients, int) or not 1 <= patients <= len(PATIENT_ORDER):
        raise GlucokitError(f"patients must be a whole number from 1 to {len(PATIENT_ORDER)}, not {patients!r}")
    if isinstance(days, bool) or not isinstance(days, int | float) or not (math.isfinite(days) and days > 0):
        raise GlucokitError(f"days must be a number greater than 0, not {days!r}")
    if start.tzinfo is None:
        raise GlucokitError("start needs a time zone (simulated times are written in UTC)")
    start = start.astimezone(UTC)
    jobs = [
        _Job(name, patient_seeds(seed, index), start.replace(tzinfo=None), timedelta(days=days))
        for index, name in enumerate(PATIENT_ORDER[:patients])
    ]
    # Spawned workers start clean (no inherited threads or state) and import
    # simglucose themselves; map() keeps the patient order.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 1), mp_context=context) as pool:
        traces = list(pool.map(_run, jobs))
    return [_result(trace, job.seeds, seed) for trace, job in zip(traces, jobs, strict=True)]


def _result(trace: Trace, seeds: PatientSeeds, seed: int) -> SimulatedPatient:
    start, end = trace.times[0], trace.times[-1]
    reason = drop_reason(trace.times, trace.bg)
    if reason is not None:
        return SimulatedPatient(trace.name, seeds, start, end, bundle=None, dropped=reason)
    return SimulatedPatient(trace.name, seeds, start, end, bundle=bundle(trace, seed))


def bundle(trace: Trace, seed: int) -> dict[str, Any]:
    """A collection Bundle of the trace's observations, in time order (CGM, carbs, insulin at one instant)."""
    entries = [*_cgm_entries(trace, seed), *_carb_entries(trace, seed), *_insulin_entries(trace, seed)]
    order = {"cgm": 0, "carbs": 1, "insulin": 2}
    entries.sort(key=lambda entry: (entry[0], order[entry[1]]))
    start, end = trace.times[0], trace.times[-1]
    return {
        "resourceType": "Bundle",
        "id": str(uuid5(_NAMESPACE, f"{trace.name}/seed-{seed}/{instant(start)}/{instant(end)}")),
        "type": "collection",
        "timestamp": instant(end),
        "entry": [entry for _, _, entry in entries],
    }


_Entry = tuple[datetime, str, dict[str, Any]]


def _entry(trace: Trace, seed: int, short: str, moment: datetime, value: Decimal, *, device: str | None) -> _Entry:
    kind = {"cgm": _CGM, "carbs": _CARBS, "insulin": _INSULIN}[short]
    source_id = f"{trace.name}/seed-{seed}/{short}/{instant(moment)}"
    resource = observation(kind, value, moment, source_system=SOURCE_SYSTEM, source_id=source_id, device=device)
    return moment, short, {"fullUrl": f"urn:uuid:{uuid5(_NAMESPACE, source_id)}", "resource": resource}


def _cgm_entries(trace: Trace, seed: int) -> Iterator[_Entry]:
    low, high = CGM_RANGE_MG_DL
    for moment, value in zip(trace.times, trace.cgm, strict=True):
        reading = min(max(Decimal(value).quantize(Decimal(1)), low), high)
        yield _entry(trace, seed, "cgm", moment, reading, device=CGM_DEVICE)


def _carb_entries(trace: Trace, seed: int) -> Iterator[_Entry]:
    # A meal that shows in consecutive steps is one intake, at the start of its first step.
    meal_start: datetime | None = None
    grams = Decimal(0)
    # A zero step at the end closes a meal still open when the run ends.
    for moment, amount in [*zip(trace.times[:-1], trace.carbs, strict=True), (trace.times[-1], 0.0)]:
        if amount > 0:
            meal_start = moment if meal_start is None else meal_start
            grams += Decimal(amount)
        elif meal_start is not None:
            yield _entry(trace, seed, "carbs", meal_start, grams.quantize(Decimal("0.1")), device=None)
            meal_start, grams = None, Decimal(0)


def _insulin_entries(trace: Trace, seed: int) -> Iterator[_Entry]:
    for moment, amount in zip(trace.times[:-1], trace.insulin, strict=True):
        units = Decimal(amount).quantize(Decimal("0.001"))
        if units > 0:
            yield _entry(trace, seed, "insulin", moment, units, device=PUMP_DEVICE)


def write_bundles(results: Sequence[SimulatedPatient], out_dir: Path, *, compress: bool) -> list[Path]:
    """Write each kept patient's bundle to ``<out_dir>/<name with # as ->.json[.gz]``; dropped ones are skipped."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for result in results:
        if result.bundle is None:
            continue
        data = orjson.dumps(result.bundle) + b"\n"
        path = out_dir / f"{result.file_stem}.json{'.gz' if compress else ''}"
        # mtime=0 and no file name in the gzip header: the bytes depend on the data only.
        path.write_bytes(gzip.compress(data, compresslevel=9, mtime=0) if compress else data)
        written.append(path)
    return written


# ---- in the worker process -------------------------------------------------


def _run(job: _Job) -> Trace:
    """Run one patient through simglucose and return its results as amounts per step."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("simglucose").setLevel(logging.ERROR)  # it logs every meal and bolus
        # Imported here, in the worker: simglucose pulls in gym, pandas and scipy.
        from simglucose.actuator.pump import InsulinPump  # noqa: PLC0415
        from simglucose.controller.basal_bolus_ctrller import BBController  # noqa: PLC0415
        from simglucose.patient.t1dpatient import T1DPatient  # noqa: PLC0415
        from simglucose.sensor.cgm import CGMSensor  # noqa: PLC0415
        from simglucose.simulation.env import T1DSimEnv  # noqa: PLC0415
        from simglucose.simulation.scenario_gen import RandomScenario  # noqa: PLC0415
        from simglucose.simulation.sim_engine import SimObj  # noqa: PLC0415

        # The patient's own seed only matters with random_init_bg, which stays
        # off: every run starts from the cohort's published steady state.
        env = T1DSimEnv(
            _patient(T1DPatient, job.name),
            CGMSensor.withName(SENSOR, seed=job.seeds.sensor),
            InsulinPump.withName(PUMP),
            RandomScenario(start_time=job.start, seed=job.seeds.scenario),
        )
        simulation = SimObj(env, BBController(), job.duration, animate=False)
        simulation.simulate()
        frame = simulation.results()

    # results() has one row per sample time (every 5 min for GuardianRT):
    # - BG and CGM (mg/dL) are averages over the step that ends at that time
    #   (the first row: the values at the start). The sensor holds its last
    #   sample between samples, so CGM is 4/5 of the previous sample plus 1/5
    #   of the new one.
    # - CHO (g/min) and insulin (U/min, basal + bolus) are the rates during the
    #   step that starts at that time, averaged over its minutes. A meal is
    #   announced in one minute with its whole amount, so its row shows
    #   amount / 5; the controller's bolus (U) is spread as a rate over the
    #   next step. Amount per step = rate x step minutes.
    # - The last row, the end of the run, starts no step: CHO and insulin NaN.
    minutes = float(env.sample_time)
    steps = len(frame) - 1
    return Trace(
        name=job.name,
        times=tuple(moment.to_pydatetime().replace(tzinfo=UTC) for moment in frame.index),
        bg=tuple(float(value) for value in frame["BG"]),
        cgm=tuple(float(value) for value in frame["CGM"]),
        carbs=tuple(float(value) * minutes for value in frame["CHO"].iloc[:steps]),
        insulin=tuple(float(value) * minutes for value in frame["insulin"].iloc[:steps]),
    )


def _patient(patient_class: Any, name: str) -> Any:
    """``T1DPatient.withName(name)``, with the same numbers in a namespace instead of a pandas Series.

    The model reads ~40 parameters by attribute on every ODE evaluation, and
    pandas attribute access took >90 % of the run time (~17 s CPU per
    patient-day with pandas 3, ~2.8 s without). Python floats compute the same
    IEEE doubles as numpy's, so the trace does not change (checked: identical
    results), only the speed.
    """
    import pandas as pd  # type: ignore[import-untyped]  # noqa: PLC0415 - in the worker only

    table = pd.read_csv(importlib.resources.files("simglucose").joinpath("params", "vpatient_params.csv"))
    row = table.loc[table.Name == name].squeeze()
    # withName's initial state: columns x0_1..x0_13, the patient's steady state.
    return patient_class(types.SimpleNamespace(**row.to_dict()), init_state=row.iloc[2:15].to_numpy(dtype=float))
