// The one place a Prisma transaction becomes a signed-in Supabase user.
//
// Row-level security decides what a query sees from the role and JWT claims of
// the transaction it runs in, so every read runs inside `withClaims`: one
// `$transaction` that first switches to `authenticated` with the caller's
// claims, exactly as PostgREST (and glucokit's Python API) does. Both settings
// are transaction-local (`set_config(..., true)`): they end with the
// transaction and never leak into the next one of a pooled connection.
//
// The connection's own login must be allowed to `set role authenticated`
// (Supabase's `authenticator` is). Never connect as an administrator role: it bypasses
// row-level security.
import type { Prisma, PrismaClient } from "@/prisma/generated/client";

/** A verified access token's claims: `sub` is the user; policies read them via auth.uid() and auth.jwt(). */
export type Claims = Readonly<{ sub: string } & Record<string, unknown>>;

/**
 * Runs `fn` in one transaction as `authenticated` with `claims`.
 *
 * The transaction also reads times in UTC: @prisma/adapter-pg 7.10 parses a
 * timestamptz as if the session's TimeZone were UTC, so under any other
 * TimeZone every time it returns would be off by the zone's offset.
 */
export async function withClaims<T>(
  prisma: PrismaClient,
  claims: Claims,
  fn: (tx: Prisma.TransactionClient) => Promise<T>,
): Promise<T> {
  return prisma.$transaction(async (tx) => {
    await tx.$queryRaw`select set_config('role', 'authenticated', true),
      set_config('request.jwt.claims', ${JSON.stringify(claims)}, true),
      set_config('TimeZone', 'UTC', true)`;
    return fn(tx);
  });
}
