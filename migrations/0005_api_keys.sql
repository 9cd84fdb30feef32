-- authz 0005: API keys for callers. Only the SHA-256 of each key's secret is
-- stored; `authz api-key create` prints the key once. A NOTIFY on channel
-- authz_api_keys tells every replica to reload, so a revocation takes effect
-- at once.

create table api_keys (
  id            text primary key check (id ~ '^[0-9a-f]{16}$'),
  name          text not null,
  secret_sha256 text not null check (secret_sha256 ~ '^[0-9a-f]{64}$'),
  scopes        text[] not null check (scopes <@ array['check', 'ratelimit', 'admin']::text[] and cardinality(scopes) > 0),
  tenant_id     uuid references tenants (id) on delete cascade,
  created_at    timestamptz not null default now(),
  revoked_at    timestamptz
);

create function authz_api_keys_notify() returns trigger
language plpgsql as $$
begin
  perform pg_notify('authz_api_keys', '');
  return null;
end $$;

create trigger api_keys_notify after insert or update or delete or truncate on api_keys
  for each statement execute function authz_api_keys_notify();
