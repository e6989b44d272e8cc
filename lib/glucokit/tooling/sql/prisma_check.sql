-- The SQL half of the Prisma check (glucokit.tooling.prisma_check).
-- Named queries: see lib/glucokit/db/queries.py.

-- name: tables_without_rls
-- Tables (partitions included) of the exposed schema without row-level security.
select c.relname
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
where n.nspname = 'public' and c.relkind in ('r', 'p') and not c.relrowsecurity
order by c.relname;

-- name: column_type
-- The type name and modifier of one column (for vector(384): vector, 384).
select t.typname, a.atttypmod
from pg_attribute a
join pg_type t on t.oid = a.atttypid
where a.attrelid = to_regclass(format('%%I.%%I', %(schema)s::text, %(table)s::text))
  and a.attname = %(column)s and not a.attisdropped;
