-- authz 0010: the "directory" scope for API keys. A key with it may call
-- DirectoryService (ManageDirectory and the directory reads) without the
-- broader "admin" scope, which keeps covering DirectoryService too.

alter table api_keys drop constraint api_keys_scopes_check;
alter table api_keys add constraint api_keys_scopes_check
  check (scopes <@ array['check', 'ratelimit', 'admin', 'directory']::text[] and cardinality(scopes) > 0);
