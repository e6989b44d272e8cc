// Supabase access tokens, verified as Supabase Auth signs them (the same rules as glucokit's Python API).
//
// Supabase Auth signs with the project's shared JWT secret (HS256, set
// SUPABASE_JWT_SECRET) or with an asymmetric signing key (RS256 or ES256)
// whose public half it publishes at
// `${SUPABASE_URL}/auth/v1/.well-known/jwks.json` (set SUPABASE_URL). A token
// is accepted only when its algorithm is one the configured keys verify
// (never `none`, and an HS256 token is never checked against a public key),
// its signature holds, it carries `exp` and has not expired (30 s of clock
// skew allowed), its role is `authenticated` (an anon or service key is not a
// user) and its audience is `authenticated`.
import { createRemoteJWKSet, decodeProtectedHeader, errors, jwtVerify, type JWTPayload } from "jose";
import type { Claims } from "./rls";
import { Problem } from "./problem";

const AUDIENCE = "authenticated";
const ASYMMETRIC = ["RS256", "ES256"];
const LEEWAY_S = 30;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** No token, or not a valid access token of a signed-in user: answered 401 with a Bearer challenge. */
export class Unauthorized extends Problem {
  constructor(detail: string) {
    super(401, "Unauthorized", detail, { "www-authenticate": 'Bearer error="invalid_token"' });
  }
}

/** A verified signed-in user: their id and every claim of their token. */
export type Caller = { userId: string; claims: Claims };

// createRemoteJWKSet caches the fetched keys and refetches on an unknown `kid`: one set per URL.
const keySets = new Map<string, ReturnType<typeof createRemoteJWKSet>>();

function jwks(supabaseUrl: string): ReturnType<typeof createRemoteJWKSet> {
  const url = new URL("auth/v1/.well-known/jwks.json", supabaseUrl.endsWith("/") ? supabaseUrl : `${supabaseUrl}/`);
  let keySet = keySets.get(url.href);
  if (!keySet) {
    keySet = createRemoteJWKSet(url);
    keySets.set(url.href, keySet);
  }
  return keySet;
}

/** The signed-in user of a request's `Authorization: Bearer` header; throws Unauthorized otherwise. */
export async function callerOf(request: Request): Promise<Caller> {
  const [scheme, token, ...rest] = (request.headers.get("authorization") ?? "").trim().split(/\s+/);
  if (scheme?.toLowerCase() !== "bearer" || !token || rest.length > 0) {
    throw new Unauthorized("sign in: send the access token as 'Authorization: Bearer <token>'");
  }
  const claims = await verify(token);
  if (typeof claims.sub !== "string" || !UUID.test(claims.sub)) {
    throw new Unauthorized("the token names no user (sub is not a user id)");
  }
  return { userId: claims.sub, claims: claims as Claims };
}

/** The claims of a signed-in user's valid access token; throws Unauthorized otherwise. */
export async function verify(token: string): Promise<JWTPayload> {
  const secret = process.env.SUPABASE_JWT_SECRET || undefined;
  const supabaseUrl = process.env.SUPABASE_URL || undefined;
  if (!secret && !supabaseUrl) throw new Error("token verification needs SUPABASE_JWT_SECRET, SUPABASE_URL, or both");
  let algorithm: string | undefined;
  try {
    algorithm = decodeProtectedHeader(token).alg;
  } catch (error) {
    throw new Unauthorized(`not a JWT: ${(error as Error).message}`);
  }
  const options = { algorithms: [algorithm ?? ""], clockTolerance: LEEWAY_S, requiredClaims: ["exp", "role"] };
  let payload: JWTPayload;
  try {
    if (algorithm === "HS256" && secret) {
      ({ payload } = await jwtVerify(token, new TextEncoder().encode(secret), options));
    } else if (algorithm && ASYMMETRIC.includes(algorithm) && supabaseUrl) {
      ({ payload } = await jwtVerify(token, jwks(supabaseUrl), options));
    } else {
      throw new Unauthorized(`tokens signed with '${algorithm}' are not accepted`);
    }
  } catch (error) {
    if (error instanceof Unauthorized) throw error;
    if (error instanceof errors.JWTExpired) throw new Unauthorized("the token has expired: sign in again");
    if (error instanceof errors.JWKSNoMatchingKey) throw new Unauthorized(`no signing key for this token: ${error.message}`);
    if (error instanceof errors.JOSEError) throw new Unauthorized(`invalid token: ${error.message}`);
    throw error; // not the token's fault (e.g. the JWKS could not be fetched): a server error
  }
  // The audience is checked after the role: an anon key carries none.
  if (payload.role !== "authenticated") {
    throw new Unauthorized(`a signed-in user's token is needed, not one with role '${String(payload.role)}'`);
  }
  const audience = payload.aud;
  if (audience !== AUDIENCE && !(Array.isArray(audience) && audience.includes(AUDIENCE))) {
    throw new Unauthorized(`the token is not for this API (audience must be '${AUDIENCE}')`);
  }
  return payload;
}
