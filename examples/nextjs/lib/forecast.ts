// A person's latest forecast curve, read with Prisma Client inside the caller's transaction (lib/rls.ts).
//
// The same read as glucokit's Python API (read_latest_curve in
// lib/glucokit/db/sql/queries.sql): the newest origin (generated_at) and, of it,
// the newest model's points, by horizon. Each point carries its band, its
// nominal coverage and the observations it was computed from as FHIR
// references. The response uses the Python API's field names, so a client
// reads either the same way.
//
// Informational trend forecasts only: never for dosing, diagnosis or triage.
import type { Prisma } from "@/prisma/generated/client";
// The disclaimer's text lives in lib/glucokit/disclaimer.py alone. This file is
// generated from it (`.venv/bin/python tests/test_nextjs_example.py`) and
// tests/test_nextjs_example.py fails when the two differ, so the text is
// never typed twice. A file rather than a version-only answer because the
// disclaimer must reach the user with every forecast: the route sends its text.
import disclaimers from "./disclaimers.json" with { type: "json" };

export type Language = string;

/** The languages the disclaimer is written in; the first is the default. */
export const LANGUAGES: readonly Language[] = disclaimers.languages;

type Texts = Record<string, Record<Language, string>>;

export function disclaimer(version: string, language: Language) {
  const text = (disclaimers.versions as Texts)[version]?.[language];
  if (text === undefined) {
    // A stored version this file does not know: regenerate it from disclaimer.py.
    throw new Error(`no disclaimer text for version ${version} in ${language}`);
  }
  return { version, language, text };
}

/** Whether the signed-in user sees the person (owns it): row-level security answers. */
export async function personVisible(tx: Prisma.TransactionClient, personId: string): Promise<boolean> {
  return (await tx.person.findUnique({ where: { id: personId }, select: { id: true } })) !== null;
}

/** The person's latest forecast curve; null when it has none (or is not visible). */
export async function latestForecast(tx: Prisma.TransactionClient, personId: string, language: Language) {
  const forecast = await tx.forecast.findFirst({
    where: { personId },
    orderBy: [{ generatedAt: "desc" }, { createdAt: "desc" }],
  });
  if (forecast === null) return null;
  // A JavaScript Date keeps milliseconds and PostgreSQL microseconds: match the
  // origin as the millisecond it falls in (the forecast id picks the rows; the
  // range lets the database look in one day's partition).
  const origin = { gte: forecast.generatedAt, lt: new Date(forecast.generatedAt.getTime() + 1) };
  const where = { forecastId: forecast.id, generatedAt: origin };
  const points = await tx.prediction.findMany({ where, orderBy: { horizonMinutes: "asc" } });
  // The forecast's anchors, once for all its points: the input window first,
  // then covariates, by time (the enum's order).
  const sources = await tx.predictionSource.findMany({
    where,
    orderBy: [{ role: "asc" }, { observationEffectiveAt: "asc" }, { observationId: "asc" }],
    select: { observationId: true, observationEffectiveAt: true, role: true, observation: { select: { code: true } } },
  });
  const first = points[0];
  if (first === undefined) return null;
  const references = sources.map((source) => ({
    reference: `Observation/${source.observationId}`,
    effective_at: source.observationEffectiveAt.toISOString(),
    role: source.role,
    code: source.observation.code,
  }));
  return {
    person_id: personId,
    generated_at: first.generatedAt.toISOString(),
    points: points.map((point) => ({
      id: point.id,
      generated_at: point.generatedAt.toISOString(),
      target_at: point.targetAt.toISOString(),
      minutes: point.horizonMinutes,
      value_mg_dl: point.valueMgDl,
      lower_mg_dl: point.lowerMgDl,
      upper_mg_dl: point.upperMgDl,
      coverage: forecast.coverage,
      sources: references,
    })),
    provenance: {
      model_id: forecast.modelId,
      model_version: forecast.modelVersion,
      training_run_id: forecast.trainingRunId,
      data_from: forecast.dataFrom.toISOString(),
      data_to: forecast.dataTo.toISOString(),
      code_version: forecast.codeVersion,
    },
    disclaimer: disclaimer(forecast.disclaimerVersion, language),
  };
}

export type LatestForecast = NonNullable<Awaited<ReturnType<typeof latestForecast>>>;
