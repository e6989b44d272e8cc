"""Development and operator tooling: the embedded PostgreSQL, migrations and the platform layer, the Supabase CLI,
the advisors, the generated TypeScript types, Prisma's schema check, pgTAP, the access matrix (policies) and the
simulator.

Never imported by runtime code (api, jobs, modelops, privacy, fhir, forecast, db); only the CLI, tests and
benchmarks use it. May import the runtime layers below api and jobs (docs/architecture.md).
"""
