// Resolves the Postgres and Redis the integration tests use, once per run:
// DATABASE_URL / REDIS_URL when set, else containers through testcontainers,
// else a failure that says how to provide them. Then builds a template
// database with every migration applied; each test file clones it.
import postgres from "postgres";
import type { TestProject } from "vitest/node";
import { migrate } from "../src/store/migrate.js";
import { createPostgresClient } from "../src/store/postgres-client.js";
import { createLogger } from "../src/logger.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** Connection string to the server's maintenance database (creates/drops test databases). */
    adminUrl: string;
    /** Name of the migrated template database. */
    templateDb: string;
    redisUrl: string;
  }
}

const HOW_TO = `integration tests need PostgreSQL and Redis. Either
  - export DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres and REDIS_URL=redis://127.0.0.1:6379
    (bash .ci/run starts and exports both on Debian), or
  - run a Docker engine so testcontainers can start them.`;

type Stop = () => Promise<void>;

async function fromContainers(): Promise<{ databaseUrl: string; redisUrl: string; stop: Stop }> {
  let tc: typeof import("testcontainers");
  try {
    tc = await import("testcontainers");
    await tc.getContainerRuntimeClient();
  } catch (err) {
    throw new Error(`DATABASE_URL / REDIS_URL are not set and no container runtime is available (${(err as Error).message}).\n${HOW_TO}`);
  }
  const pg = await new tc.GenericContainer("postgres:16-alpine")
    .withEnvironment({ POSTGRES_HOST_AUTH_METHOD: "trust" })
    .withExposedPorts(5432)
    .withWaitStrategy(tc.Wait.forLogMessage(/database system is ready to accept connections/, 2))
    .start();
  const redis = await new tc.GenericContainer("redis:7-alpine").withExposedPorts(6379).start();
  return {
    databaseUrl: `postgres://postgres@${pg.getHost()}:${pg.getMappedPort(5432)}/postgres`,
    redisUrl: `redis://${redis.getHost()}:${redis.getMappedPort(6379)}`,
    stop: async () => {
      await Promise.all([pg.stop(), redis.stop()]);
    },
  };
}

export default async function setup(project: TestProject): Promise<Stop> {
  let databaseUrl = process.env.DATABASE_URL;
  let redisUrl = process.env.REDIS_URL;
  let stopContainers: Stop = async () => {};
  if (!databaseUrl || !redisUrl) {
    const c = await fromContainers();
    databaseUrl ??= c.databaseUrl;
    redisUrl ??= c.redisUrl;
    stopContainers = c.stop;
  }
  const admin = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  try {
    await admin`select 1`;
  } catch (err) {
    await admin.end();
    throw new Error(`cannot reach PostgreSQL at DATABASE_URL (${(err as Error).message}).\n${HOW_TO}`);
  }
  const templateDb = `authz_tpl_${process.pid}`;
  await admin.unsafe(`drop database if exists ${templateDb}`);
  await admin.unsafe(`create database ${templateDb}`);
  const url = new URL(databaseUrl);
  url.pathname = `/${templateDb}`;
  const db = createPostgresClient({ url: url.toString(), poolMax: 1, logger: createLogger("silent") });
  await migrate(db);
  await db.close();

  project.provide("adminUrl", databaseUrl);
  project.provide("templateDb", templateDb);
  project.provide("redisUrl", redisUrl);

  return async () => {
    // Test files drop their own databases; drop leftovers of crashed files too.
    const left = await admin<{ datname: string }[]>`select datname from pg_database where datname like ${`authz_t_${process.pid}_%`}`;
    for (const { datname } of left) await admin.unsafe(`drop database if exists ${datname} with (force)`);
    await admin.unsafe(`drop database if exists ${templateDb} with (force)`);
    await admin.end();
    await stopContainers();
  };
}
