-- The access matrix's guards over the catalog (glucokit.tooling.policies).
-- Named queries: see lib/glucokit/db/queries.py.

-- name: guard_tables
-- Tables and partitions of the exposed schemas: name, row-level security on, is a partition.
select n.nspname || '.' || c.relname, c.relrowsecurity, c.relispartition
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
where n.nspname = any(%(schemas)s) and c.relkind in ('r', 'p')
order by 1;

-- name: guard_definer_views
-- Views of the exposed schemas that run with their owner's rights.
select n.nspname || '.' || c.relname
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
where n.nspname = any(%(schemas)s)
  and c.relkind in ('v', 'm')
  and not coalesce('security_invoker=true' = any(c.reloptions), false)
order by 1;

-- name: guard_policies
-- Policies on the exposed schemas and on storage.objects.
select schemaname, tablename, policyname, permissive = 'PERMISSIVE', roles::text[], cmd, qual, with_check
from pg_policies
where schemaname = any(%(schemas)s) or (schemaname = 'storage' and tablename = 'objects')
order by 1, 2, 3;

-- name: guard_unindexed_policy_columns
-- Columns that policies read and that no index of their table starts with.
select distinct n.nspname || '.' || c.relname, a.attname
from pg_policy p
join pg_class c on c.oid = p.polrelid
join pg_namespace n on n.oid = c.relnamespace
join pg_depend d
  on d.classid = 'pg_policy'::regclass and d.objid = p.oid
  and d.refclassid = 'pg_class'::regclass and d.refobjid = c.oid and d.refobjsubid > 0
join pg_attribute a on a.attrelid = c.oid and a.attnum = d.refobjsubid
where n.nspname = any(%(schemas)s)
  and not exists (select from pg_index i where i.indrelid = c.oid and i.indkey[0] = d.refobjsubid)
order by 1, 2;

-- name: guard_security_definer
-- Security-definer functions in the given schemas, with their settings.
select format('%%I.%%I(%%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
       n.nspname, coalesce(array_to_string(p.proconfig, ','), '')
from pg_proc p
join pg_namespace n on n.oid = p.pronamespace
where p.prosecdef and n.nspname = any(%(schemas)s)
order by 1;

-- name: guard_anon_grants
-- Privileges that anon or PUBLIC hold on tables, columns and functions of the given schemas.
select target, string_agg(distinct privilege, ', ' order by privilege)
from (
  select n.nspname || '.' || c.relname as target, acl.privilege_type as privilege
  from pg_class c
  join pg_namespace n on n.oid = c.relnamespace
  cross join lateral aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) acl
  where n.nspname = any(%(schemas)s)
    and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')
    and acl.grantee in (0, to_regrole('anon'))
  union all
  select n.nspname || '.' || c.relname || '.' || a.attname, acl.privilege_type
  from pg_attribute a
  join pg_class c on c.oid = a.attrelid
  join pg_namespace n on n.oid = c.relnamespace
  cross join lateral aclexplode(a.attacl) acl
  where n.nspname = any(%(schemas)s) and acl.grantee in (0, to_regrole('anon'))
  union all
  select format('%%I.%%I(%%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)), acl.privilege_type
  from pg_proc p
  join pg_namespace n on n.oid = p.pronamespace
  cross join lateral aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) acl
  where n.nspname = any(%(schemas)s) and acl.grantee in (0, to_regrole('anon'))
) as granted
group by target
order by target;

-- name: guard_routines
-- Functions and views of the exposed schemas that anon or authenticated may call or read (the Data API's RPCs
-- and views), with their kind; trigger functions and what extensions bring are not the Data API's.
select n.nspname || '.' || p.proname, 'function'
from pg_proc p
join pg_namespace n on n.oid = p.pronamespace
where n.nspname = any(%(schemas)s)
  and p.prokind = 'f'
  and p.prorettype not in ('trigger'::regtype, 'event_trigger'::regtype)
  and not exists (select from pg_depend d where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e')
  and (has_function_privilege('anon', p.oid, 'execute') or has_function_privilege('authenticated', p.oid, 'execute'))
union
select n.nspname || '.' || c.relname, 'view'
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
where n.nspname = any(%(schemas)s)
  and c.relkind in ('v', 'm')
  and not exists (select from pg_depend d where d.classid = 'pg_class'::regclass and d.objid = c.oid and d.deptype = 'e')
  and (has_table_privilege('anon', c.oid, 'select') or has_table_privilege('authenticated', c.oid, 'select'))
order by 1;

-- name: guard_anonymous_fence
-- Tables of the exposed schemas without a restrictive policy for authenticated that reads is_anonymous.
select n.nspname || '.' || c.relname
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
where n.nspname = any(%(schemas)s)
  and c.relkind in ('r', 'p')
  and not c.relispartition
  and not exists (
    select from pg_policies pp
    where pp.schemaname = n.nspname and pp.tablename = c.relname and pp.permissive = 'RESTRICTIVE'
      and pp.cmd = 'ALL' and 'authenticated' = any(pp.roles)
      and pp.qual like '%%is_anonymous%%' and pp.with_check like '%%is_anonymous%%'
  )
order by 1;

-- name: guard_relation_exists
-- Whether a relation outside the exposed schemas (realtime.messages) exists.
select to_regclass(%(name)s) is not null;
