// Prisma Client over node-postgres (@prisma/adapter-pg): no query engine binary.
// DATABASE_URL is a login that may `set role authenticated` (Supabase's
// `authenticator`), never a role that bypasses RLS; lib/rls.ts switches each transaction to
// the signed-in user. One client per process (kept on globalThis so that
// Next.js's hot reload in development does not open a pool per reload).
import { PrismaPg } from "@prisma/adapter-pg";
import { PrismaClient } from "@/prisma/generated/client";

const holder = globalThis as typeof globalThis & { glucokitPrisma?: PrismaClient };

export function prisma(): PrismaClient {
  if (!holder.glucokitPrisma) {
    const connectionString = process.env.DATABASE_URL;
    if (!connectionString) throw new Error("DATABASE_URL is not set");
    holder.glucokitPrisma = new PrismaClient({ adapter: new PrismaPg({ connectionString }) });
  }
  return holder.glucokitPrisma;
}
