// The route handler against a real database, called as Next.js calls it, with real signed tokens.
//
//   node --import tsx --test test/forecast-route.test.mts   (from examples/nextjs, after `prisma generate`)
//
// tests/test_nextjs_example.py builds the data and runs this with:
//   DATABASE_URL              a login that may `set role authenticated` (not the owner, never a role that bypasses RLS)
//   SUPABASE_JWT_SECRET       the HS256 secret the tokens are signed with
//   GLUCOKIT_OWNER_USER_ID, GLUCOKIT_OWNER_PERSON_ID   a user and their person, with forecasts
//   GLUCOKIT_OTHER_USER_ID, GLUCOKIT_OTHER_PERSON_ID   another user and their person, without forecasts
//   GLUCOKIT_EXPECTED_CURVE   the owner's latest curve as glucokit's Python reads it (JSON)
// SUPABASE_URL is set here, to a local server that publishes a JWKS as Supabase Auth does.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { PrismaPg } from "@prisma/adapter-pg";
import { base64url, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWTPayload } from "jose";
import { PrismaClient } from "@/prisma/generated/client";
import { GET } from "@/app/api/persons/[personId]/forecast/route";
import { prisma } from "@/lib/prisma";
import { withClaims } from "@/lib/rls";

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (tests/test_nextjs_example.py sets it)`);
  return value;
}

const SECRET = env("SUPABASE_JWT_SECRET");
const OWNER = { user: env("GLUCOKIT_OWNER_USER_ID"), person: env("GLUCOKIT_OWNER_PERSON_ID") };
const OTHER = { user: env("GLUCOKIT_OTHER_USER_ID"), person: env("GLUCOKIT_OTHER_PERSON_ID") };
type Source = { reference: string; effective_at: string; role: string; code: string };
type ExpectedPoint = {
  id: string; minutes: number; value_mg_dl: number; lower_mg_dl: number; upper_mg_dl: number; coverage: number;
  sources: Source[];
};
const EXPECTED: {
  generated_at: string; model_version: string; points: ExpectedPoint[];
  disclaimer: { version: string; texts: Record<string, string> };
} = JSON.parse(env("GLUCOKIT_EXPECTED_CURVE"));

const ES256 = await generateKeyPair("ES256");
const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(ES256.publicKey)), kid: "es-1", alg: "ES256" }] });
const jwksServer = createServer((request, response) => {
  const found = request.url === "/auth/v1/.well-known/jwks.json";
  response.writeHead(found ? 200 : 404, { "content-type": "application/json" }).end(found ? jwks : "{}");
});

before(async () => {
  await new Promise<void>((resolve) => jwksServer.listen(0, "127.0.0.1", resolve));
  process.env.SUPABASE_URL = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}`;
});

after(async () => {
  jwksServer.close();
  await prisma().$disconnect();
});

type Signing = { claims?: JWTPayload; expiresIn?: number; alg?: "HS256" | "HS384" | "ES256"; key?: CryptoKey | Uint8Array; kid?: string };

async function token(user: string | null, { claims = {}, expiresIn = 3600, alg = "HS256", key, kid }: Signing = {}) {
  const now = Math.floor(Date.now() / 1000);
  const jwt = new SignJWT({ role: "authenticated", aud: "authenticated", ...(user ? { sub: user } : {}), ...claims })
    .setProtectedHeader({ alg, typ: "JWT", ...(alg === "ES256" ? { kid: kid ?? "es-1" } : {}) })
    .setIssuedAt(now)
    .setExpirationTime(now + expiresIn);
  return jwt.sign(key ?? (alg === "ES256" ? ES256.privateKey : new TextEncoder().encode(SECRET)));
}

/** A token with `alg: none`: no signature at all. */
function unsigned(user: string): string {
  const part = (value: object) => base64url.encode(JSON.stringify(value));
  const exp = Math.floor(Date.now() / 1000) + 60;
  return `${part({ alg: "none", typ: "JWT" })}.${part({ sub: user, role: "authenticated", aud: "authenticated", exp })}.`;
}

async function get(personId: string, headers: Record<string, string> = {}, query = ""): Promise<Response> {
  const request = new Request(`http://localhost/api/persons/${personId}/forecast${query}`, { headers });
  return GET(request, { params: Promise.resolve({ personId }) });
}

const bearer = (value: string) => ({ authorization: `Bearer ${value}` });

async function problem(response: Response, status: number): Promise<Record<string, unknown>> {
  const body = await response.json();
  assert.equal(response.status, status, JSON.stringify(body));
  assert.equal(response.headers.get("content-type"), "application/problem+json");
  assert.deepEqual(Object.keys(body).sort(), ["detail", "instance", "status", "title", "type"]);
  assert.equal(body.status, status);
  return body;
}

const instant = (text: string) => new Date(text).getTime();

describe("the owner", () => {
  test("reads the latest curve: the newest origin's newest model, 12 points with bands and sources", async () => {
    const response = await get(OWNER.person, bearer(await token(OWNER.user)));
    const body = await response.json();
    assert.equal(response.status, 200, JSON.stringify(body));
    assert.equal(response.headers.get("content-type"), "application/json");
    assert.equal(body.person_id, OWNER.person);
    assert.equal(instant(body.generated_at), instant(EXPECTED.generated_at));
    assert.equal(body.provenance.model_version, EXPECTED.model_version);
    assert.deepEqual(body.points.map((point: { minutes: number }) => point.minutes), [5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60]);
    assert.equal(body.points.length, EXPECTED.points.length);
    body.points.forEach((point: Record<string, unknown> & { sources: Source[] }, index: number) => {
      const expected = EXPECTED.points[index]!;
      const { sources, ...values } = point;
      assert.deepEqual(
        { ...values, generated_at: instant(values.generated_at as string), target_at: instant(values.target_at as string) },
        {
          id: expected.id, minutes: expected.minutes, value_mg_dl: expected.value_mg_dl,
          lower_mg_dl: expected.lower_mg_dl, upper_mg_dl: expected.upper_mg_dl, coverage: expected.coverage,
          generated_at: instant(EXPECTED.generated_at),
          target_at: instant(EXPECTED.generated_at) + expected.minutes * 60_000,
        },
      );
      assert.ok(expected.lower_mg_dl <= expected.value_mg_dl && expected.value_mg_dl <= expected.upper_mg_dl);
      assert.ok(sources.length > 0);
      for (const source of sources) {
        assert.match(source.reference, /^Observation\/[0-9a-f-]{36}$/);
        assert.ok(["input_window", "covariate"].includes(source.role));
      }
      const at = (list: Source[]) => list.map((source) => ({ ...source, effective_at: instant(source.effective_at) }));
      assert.deepEqual(at(sources), at(expected.sources));
    });
    assert.deepEqual(body.disclaimer, {
      version: EXPECTED.disclaimer.version, language: "en", text: EXPECTED.disclaimer.texts.en,
    });
  });

  test("gets the disclaimer in German, and a problem for a language it is not written in", async () => {
    const german = await (await get(OWNER.person, bearer(await token(OWNER.user)), "?lang=de")).json();
    assert.equal(german.disclaimer.text, EXPECTED.disclaimer.texts.de);
    const french = await problem(await get(OWNER.person, bearer(await token(OWNER.user)), "?lang=fr"), 422);
    assert.equal(french.detail, "query.lang: Input should be 'en' or 'de'");
  });

  test("reads the same with a token signed by a key of the project's JWKS", async () => {
    const response = await get(OWNER.person, bearer(await token(OWNER.user, { alg: "ES256" })));
    assert.equal(response.status, 200);
    const body = await response.json();
    assert.deepEqual(body.points.map((point: { id: string }) => point.id), EXPECTED.points.map((point) => point.id));
  });

  test("gets a problem for a person id that is not a UUID", async () => {
    const body = await problem(await get("not-a-uuid", bearer(await token(OWNER.user))), 422);
    assert.equal(body.detail, "path.personId: not a UUID");
  });
});

describe("another user", () => {
  test("gets nothing: the owner's person answers exactly like a missing one", async () => {
    const missing = randomUUID();
    const theirs = await problem(await get(OWNER.person, bearer(await token(OTHER.user))), 404);
    const absent = await problem(await get(missing, bearer(await token(OTHER.user))), 404);
    assert.deepEqual(
      JSON.parse(JSON.stringify(theirs).replaceAll(OWNER.person, "X")),
      JSON.parse(JSON.stringify(absent).replaceAll(missing, "X")),
    );
    assert.equal(theirs.detail, `no person ${OWNER.person} among yours`);
  });

  test("is told their own person has no forecast yet", async () => {
    const body = await problem(await get(OTHER.person, bearer(await token(OTHER.user))), 404);
    assert.equal(body.detail, `person ${OTHER.person} has no forecast yet`);
  });
});

describe("without a signed-in user's valid token", () => {
  const SIGN_IN = "sign in: send the access token as 'Authorization: Bearer <token>'";
  const cases: [string, () => Promise<Record<string, string>>, string][] = [
    ["no token", async () => ({}), SIGN_IN],
    ["another scheme", async () => ({ authorization: "Basic abc" }), SIGN_IN],
    ["not a JWT", async () => bearer("not-a-token"), "not a JWT: "],
    [
      "the anon key",
      async () => bearer(await token(null, { claims: { role: "anon", aud: undefined } })),
      "a signed-in user's token is needed, not one with role 'anon'",
    ],
    ["an expired token", async () => bearer(await token(OWNER.user, { expiresIn: -120 })), "the token has expired: sign in again"],
    [
      "another audience",
      async () => bearer(await token(OWNER.user, { claims: { aud: "elsewhere" } })),
      "the token is not for this API (audience must be 'authenticated')",
    ],
    [
      "another secret",
      async () => bearer(await token(OWNER.user, { key: new TextEncoder().encode(`${SECRET}-but-another-one`) })),
      "invalid token: signature verification failed",
    ],
    [
      "a key not in the JWKS",
      async () => bearer(await token(OWNER.user, { alg: "ES256", key: (await generateKeyPair("ES256")).privateKey })),
      "invalid token: signature verification failed",
    ],
    ["an unknown key id", async () => bearer(await token(OWNER.user, { alg: "ES256", kid: "unknown" })), "no signing key for this token: "],
    ["no signature (alg none)", async () => bearer(unsigned(OWNER.user)), "tokens signed with 'none' are not accepted"],
    [
      "HS384",
      async () => bearer(await token(OWNER.user, { alg: "HS384", key: new TextEncoder().encode(`${SECRET}-and-more-for-384`) })),
      "tokens signed with 'HS384' are not accepted",
    ],
    [
      "no user id",
      async () => bearer(await token(null)),
      "the token names no user (sub is not a user id)",
    ],
  ];
  for (const [name, headers, detail] of cases) {
    test(`${name}: 401`, async () => {
      const response = await get(OWNER.person, await headers());
      const body = await problem(response, 401);
      assert.ok(String(body.detail).startsWith(detail), String(body.detail));
      assert.equal(body.instance, `/api/persons/${OWNER.person}/forecast`);
      assert.equal(response.headers.get("www-authenticate"), 'Bearer error="invalid_token"');
    });
  }
});

describe("withClaims", () => {
  test("the role, claims and time zone end with the transaction", async () => {
    // One connection, so the query after the transaction runs on the same session.
    const client = new PrismaClient({ adapter: new PrismaPg({ connectionString: env("DATABASE_URL"), max: 1 }) });
    try {
      const claims = { sub: OWNER.user, role: "authenticated", aud: "authenticated" };
      const inside = await withClaims(client, claims, (tx) =>
        tx.$queryRaw<{ role: string; sub: string; zone: string }[]>`select current_user::text as role,
          auth.uid()::text as sub, current_setting('TimeZone') as zone`);
      assert.deepEqual(inside, [{ role: "authenticated", sub: OWNER.user, zone: "UTC" }]);
      const afterwards = await client.$queryRaw<{ role: string; claims: string | null; zone: string }[]>`select
        current_user::text as role, nullif(current_setting('request.jwt.claims', true), '') as claims,
        current_setting('TimeZone') as zone`;
      assert.notEqual(afterwards[0]!.role, "authenticated");
      assert.equal(afterwards[0]!.claims, null);
      assert.notEqual(afterwards[0]!.zone, "UTC", "run with a DATABASE_URL whose session time zone is not UTC");
    } finally {
      await client.$disconnect();
    }
  });
});
