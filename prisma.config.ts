// Prisma CLI configuration for apps that use glucokit's schema.
// Supabase owns auth.users: Prisma reads it for relations but must never
// change it, so it is declared external. Migrations are `supabase db push`'s job.
import { defineConfig } from "prisma/config";

export default defineConfig({
  schema: "prisma/schema.prisma",
  experimental: { externalTables: true },
  tables: { external: ["auth.users"] },
  datasource: { url: process.env.DATABASE_URL ?? "" },
});
