// What one signed-in user sees through Prisma Client, under row-level security:
// the pattern the README documents for apps. Each transaction first becomes
// `authenticated` with the user's claims (transaction-local, as PostgREST
// does) through withClaims, the Next.js example's helper (examples/nextjs/lib/rls.ts),
// then reads or writes through the generated client.
//
//   node_modules/.bin/tsx prisma/tools/rls-read.mts --url <postgres URL> --user <auth user id>
//
// Prints one JSON object: the persons and forecast points the user sees, and
// whether an attempt to edit forecasts was refused. Needs `prisma generate` first.
import { parseArgs } from "node:util";
import { PrismaPg } from "@prisma/adapter-pg";
import { PrismaClient } from "../generated/client.ts";
import { withClaims } from "../../examples/nextjs/lib/rls.ts";

const { values } = parseArgs({ options: { url: { type: "string" }, user: { type: "string" } } });
if (!values.url || !values.user) throw new Error("--url and --user are required");

const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: values.url }) });
const claims = { sub: values.user, role: "authenticated", aud: "authenticated" };

const seen = await withClaims(prisma, claims, async (tx) => {
  const persons = await tx.person.findMany({ select: { id: true }, orderBy: { id: "asc" } });
  const latest = await tx.prediction.findMany({
    orderBy: [{ generatedAt: "desc" }, { horizonMinutes: "asc" }],
    take: 12,
  });
  const ids = [...new Set(latest.map((point) => point.forecastId))];
  const forecasts = await tx.forecast.findMany({ where: { id: { in: ids } } });
  const sources = await tx.predictionSource.findMany({ where: { forecastId: { in: ids } } });
  return {
    persons: persons.map((person) => person.id),
    predictions: await tx.prediction.count(),
    latest: latest.map((point) => ({
      personId: point.personId,
      horizonMinutes: point.horizonMinutes,
      disclaimerVersion: forecasts.find((forecast) => forecast.id === point.forecastId)?.disclaimerVersion,
      // Anchors are the forecast's: every point of it names the same observations.
      sources: sources.filter((source) => source.forecastId === point.forecastId).map((source) => source.observationId),
    })),
  };
});

let editForecasts: string;
try {
  await withClaims(prisma, claims, (tx) => tx.prediction.updateMany({ data: { valueMgDl: 1 } }));
  editForecasts = "allowed";
} catch (error) {
  editForecasts = /permission denied/.test(String(error)) ? "refused" : `failed: ${String(error)}`;
}

console.log(JSON.stringify({ ...seen, editForecasts }));
await prisma.$disconnect();
