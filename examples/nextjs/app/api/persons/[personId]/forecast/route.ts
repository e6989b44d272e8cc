// GET /api/persons/{personId}/forecast: the person's latest forecast curve (5-60 min ahead)
// with its bands, source observations, provenance and disclaimer.
//
// A Next.js App Router route handler that uses only the Web's Request and
// Response. The caller's Supabase access token is verified (lib/auth.ts) and
// the whole read runs in one transaction as `authenticated` with the token's
// claims (lib/rls.ts), so row-level security decides what exists: another
// user's person answers 404 exactly like a missing one. Errors are
// application/problem+json. `?lang=de` asks for the disclaimer in German.
//
// Informational trend forecasts only: never for dosing, diagnosis or triage.
import { callerOf } from "@/lib/auth";
import { LANGUAGES, latestForecast, personVisible } from "@/lib/forecast";
import { prisma } from "@/lib/prisma";
import { Problem, problemResponse } from "@/lib/problem";
import { withClaims } from "@/lib/rls";

export const runtime = "nodejs"; // node-postgres needs Node's sockets, not the Edge runtime
export const dynamic = "force-dynamic"; // per-user data: never cached or prerendered

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export async function GET(request: Request, { params }: { params: Promise<{ personId: string }> }): Promise<Response> {
  try {
    const caller = await callerOf(request);
    const { personId } = await params;
    if (!UUID.test(personId)) throw new Problem(422, "Unprocessable Content", "path.personId: not a UUID");
    const language = new URL(request.url).searchParams.get("lang") ?? LANGUAGES[0];
    if (!LANGUAGES.includes(language)) {
      const known = LANGUAGES.map((known) => `'${known}'`).join(" or ");
      throw new Problem(422, "Unprocessable Content", `query.lang: Input should be ${known}`);
    }
    const forecast = await withClaims(prisma(), caller.claims, async (tx) => {
      if (!(await personVisible(tx, personId))) {
        throw new Problem(404, "Not Found", `no person ${personId} among yours`);
      }
      return latestForecast(tx, personId, language);
    });
    if (forecast === null) throw new Problem(404, "Not Found", `person ${personId} has no forecast yet`);
    return Response.json(forecast);
  } catch (error) {
    if (error instanceof Problem) return problemResponse(error, request);
    throw error;
  }
}
