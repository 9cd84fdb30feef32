-- Where PostgreSQL's time goes when a bulk import writes role assignments:
-- 200,000 rows shaped like role_assignments' user rows (a user, a role, an
-- organization scope; the primary key, the unique key and two indexes)
-- inserted by one statement each way:
--   a_fk     with the three foreign keys role_assignments has for such a row
--   a_nofk   the same indexes, no foreign keys
--   a_pkonly the primary key only
-- and the three references checked the way a statement-level check would
-- (one anti-join over the statement's rows).
-- Run in a scratch database (docs/benchmarks.md, "Import"):
--   createdb -h 127.0.0.1 -U postgres fkcost
--   psql -h 127.0.0.1 -U postgres -d fkcost -f scripts/import-fk-cost.sql
--   dropdb -h 127.0.0.1 -U postgres fkcost
\timing on
set client_min_messages = warning;
drop table if exists a_fk, a_nofk, a_pkonly, src, users, roles, orgs;
create table users (id uuid primary key);
create table roles (id uuid primary key);
create table orgs (id uuid primary key);
insert into users select gen_random_uuid() from generate_series(1, 200000);
insert into roles select gen_random_uuid() from generate_series(1, 1000);
insert into orgs select gen_random_uuid() from generate_series(1, 20000);
create table src as
  with u as (select id, row_number() over () n from users),
       r as (select id, row_number() over () n from roles),
       o as (select id, row_number() over () n from orgs)
  select u.id uid, r.id rid, o.id oid from u join r on r.n = 1 + (u.n % 1000) join o on o.n = 1 + (u.n % 20000);
create table a_fk (id uuid primary key default gen_random_uuid(),
  user_id uuid references users on delete cascade, role_id uuid not null references roles on delete cascade,
  org_id uuid references orgs on delete cascade, active bool default true, created_at timestamptz default now(),
  unique nulls not distinct (user_id, role_id, org_id));
create index on a_fk (role_id);
create index on a_fk (org_id);
create table a_nofk (id uuid primary key default gen_random_uuid(), user_id uuid, role_id uuid not null, org_id uuid,
  active bool default true, created_at timestamptz default now(), unique nulls not distinct (user_id, role_id, org_id));
create index on a_nofk (role_id);
create index on a_nofk (org_id);
create table a_pkonly (id uuid primary key default gen_random_uuid(), user_id uuid, role_id uuid not null, org_id uuid,
  active bool default true, created_at timestamptz default now());
analyze;
\echo with the foreign keys
insert into a_fk (user_id, role_id, org_id) select uid, rid, oid from src;
\echo same indexes, no foreign keys
insert into a_nofk (user_id, role_id, org_id) select uid, rid, oid from src;
\echo primary key only
insert into a_pkonly (user_id, role_id, org_id) select uid, rid, oid from src;
\echo the three references checked over the whole statement at once
select count(*) as missing from src s
 where not exists (select 1 from users u where u.id = s.uid)
    or not exists (select 1 from roles r where r.id = s.rid)
    or not exists (select 1 from orgs o where o.id = s.oid);
drop table a_fk, a_nofk, a_pkonly, src, users, roles, orgs;
