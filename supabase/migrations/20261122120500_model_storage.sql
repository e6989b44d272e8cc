/**
 * -----------------------------------------------------------------------------
 * Model storage: the private `models` bucket
 * -----------------------------------------------------------------------------
 * Model artifacts (model.safetensors, metadata.json, training_log.txt) are
 * kept under {owner_id}/{person_id}/{model_type}/v{version}/ in a private
 * bucket. Users may read the files under their own first folder; only workers
 * write, and only into the folder of the person in their scope.
 */

insert into storage.buckets (id, name, public, file_size_limit, allowed_mime_types)
values ('models', 'models', false, 52428800, array['application/octet-stream', 'application/json', 'text/plain'])
on conflict (id) do nothing;

/**
 * A model object: a file directly inside a model folder,
 * {owner}/{person}/{model_type}/v{version}/{file name}.
 */
create or replace function private.is_model_object_name(name text) returns boolean
  language sql immutable strict parallel safe
  set search_path = ''
as $$
  select private.is_model_folder(substring(name from '^(.*/)[^/]*$'))
    and substring(name from '[^/]*$') ~ '^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$'
$$;
comment on function private.is_model_object_name(text) is 'True for a model object name {owner}/{person}/{model_type}/v{semver}/{file}.';
revoke all on function private.is_model_object_name(text) from public;
grant execute on function private.is_model_object_name(text) to glucokit_worker, service_role;

grant usage on schema storage to glucokit_worker;
grant select, insert, update, delete on storage.objects to glucokit_worker;

create policy "Users can read model files under their own folder" on storage.objects
  for select to authenticated
  using (bucket_id = 'models' and (storage.foldername(name))[1] = (select auth.uid())::text);

create policy "Workers read model files of the person in their scope" on storage.objects
  for select to glucokit_worker
  using (bucket_id = 'models' and starts_with(name, (select private.worker_storage_prefix())));

create policy "Workers store model files of the person in their scope" on storage.objects
  for insert to glucokit_worker
  with check (
    bucket_id = 'models'
    and starts_with(name, (select private.worker_storage_prefix()))
    and private.is_model_object_name(name)
  );

create policy "Workers replace model files of the person in their scope" on storage.objects
  for update to glucokit_worker
  using (bucket_id = 'models' and starts_with(name, (select private.worker_storage_prefix())))
  with check (
    bucket_id = 'models'
    and starts_with(name, (select private.worker_storage_prefix()))
    and private.is_model_object_name(name)
  );

create policy "Workers remove model files of the person in their scope" on storage.objects
  for delete to glucokit_worker
  using (bucket_id = 'models' and starts_with(name, (select private.worker_storage_prefix())));
