-- pg_temp.policy_attempt(probe, returns_count): runs one probe statement as the
-- current role and undoes whatever it did. Returns 'allowed' (rows reached),
-- 'filtered' (zero rows, no error; or no_data_found, SQLSTATE P0002, which a
-- function raises for a person that is not the caller's) or 'refused'
-- (insufficient_privilege, SQLSTATE 42501). Any other error propagates: a
-- probe that fails for another reason is a broken probe, not an outcome.
create or replace function pg_temp.policy_attempt(probe text, returns_count boolean) returns text
  language plpgsql
as $$
declare
  reached bigint;
begin
  begin
    if returns_count then
      execute probe into reached;
    else
      execute probe;
      get diagnostics reached = row_count;
    end if;
    -- Raising rolls the probe's work back; the outcome travels in the message.
    raise exception using errcode = 'GK001', message = case when reached > 0 then 'allowed' else 'filtered' end;
  exception
    when insufficient_privilege then
      return 'refused';
    when no_data_found then
      return 'filtered';
    when sqlstate 'GK001' then
      return sqlerrm;
  end;
end
$$;

-- pg_temp.policy_count(query): a count, taken with the rights of the function's
-- owner (the database owner), who sees every row whatever the current role.
create or replace function pg_temp.policy_count(query text) returns bigint
  language plpgsql security definer
  set search_path = ''
as $$
declare
  counted bigint;
begin
  execute query into counted;
  return counted;
end
$$;

-- pg_temp.policy_reach(statement, check_query): runs statement as the current
-- role, counts check_query as the owner right after it, and undoes the
-- statement. Returns that count, or null when the statement is refused.
create or replace function pg_temp.policy_reach(statement text, check_query text) returns bigint
  language plpgsql
as $$
declare
  counted bigint;
begin
  begin
    execute statement;
    counted := pg_temp.policy_count(check_query);
    raise exception using errcode = 'GK001', message = counted::text;
  exception
    when insufficient_privilege then
      return null;
    when sqlstate 'GK001' then
      return sqlerrm::bigint;
  end;
end
$$;
