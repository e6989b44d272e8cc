-- The model store's Supabase Storage backend: objects of the models bucket (glucokit.modelops.model_store).
-- Named queries: see lib/glucokit/db/queries.py.

-- name: storage_put_object
-- Records (or replaces) one object of a bucket; the bucket's policies decide whether the current role may.
insert into storage.objects (bucket_id, name, metadata)
values (%(bucket)s, %(name)s, %(metadata)s)
on conflict (bucket_id, name) do update set metadata = excluded.metadata, updated_at = now();

-- name: storage_object_etag
-- The recorded SHA-256 of one object, if the current role may read it.
select metadata ->> 'eTag' from storage.objects where bucket_id = %(bucket)s and name = %(name)s;

-- name: storage_remove_folder
-- Removes the objects under a folder that the current role may delete; returns their names.
delete from storage.objects where bucket_id = %(bucket)s and starts_with(name, %(folder)s) returning name;

-- name: storage_folder_objects
-- The objects under a folder that the current role sees.
select name from storage.objects where bucket_id = %(bucket)s and starts_with(name, %(folder)s);

-- name: storage_unregistered_folders
-- The model folders under a folder that hold objects the current role sees and that no model version it sees registers.
select distinct substring(o.name from '^(.*/)[^/]*$') as folder
from storage.objects o
where o.bucket_id = %(bucket)s
  and starts_with(o.name, %(folder)s)
  and not exists (select from public.ml_model m where m.storage_path = substring(o.name from '^(.*/)[^/]*$'))
order by folder;

-- name: worker_scope
-- The person the current worker transaction is scoped to (null when unscoped).
select private.worker_person_id();

-- name: storage_caller_role
-- The role the current transaction runs as (a signed-in user's: authenticated).
select current_user::text;

-- name: storage_caller_user
-- The signed-in user of the current transaction (authenticated only).
select auth.uid();
