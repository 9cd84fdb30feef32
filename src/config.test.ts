import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig, redactUrl } from "./config.js";

describe("loadConfig", () => {
  it("defaults to the embedded development mode", () => {
    const c = loadConfig({});
    expect(c).toMatchObject({ databaseUrl: undefined, redisUrl: undefined, grpcPort: 50051, httpPort: 8080, logLevel: "info", migrate: true });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it("binds loopback in the embedded mode (authentication off) and every interface with a database, unless AUTHZ_HOST says otherwise", () => {
    expect(loadConfig({}).host).toBe("127.0.0.1");
    expect(loadConfig({ DATABASE_URL: "postgres://db/authz" }).host).toBe("0.0.0.0");
    expect(loadConfig({ AUTHZ_HOST: "0.0.0.0" }).host).toBe("0.0.0.0");
    expect(loadConfig({ DATABASE_URL: "postgres://db/authz", AUTHZ_HOST: "10.1.2.3" }).host).toBe("10.1.2.3");
  });

  it("reports every bad variable at once, without echoing secrets", () => {
    let err: unknown;
    try {
      loadConfig({
        DATABASE_URL: "mysql://root:hunter2@db/x",
        REDIS_URL: "not a url",
        AUTHZ_GRPC_PORT: "70000",
        AUTHZ_HTTP_PORT: "http",
        AUTHZ_LOG_LEVEL: "loud",
        AUTHZ_MIGRATE: "maybe",
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const problems = (err as ConfigError).problems;
    expect(problems).toHaveLength(6);
    expect(problems.join("\n")).toMatch(/DATABASE_URL must start with postgres:\/\/ or postgresql:\/\/, got mysql:/);
    expect(problems.join("\n")).toMatch(/REDIS_URL is not a valid URL/);
    expect(problems.join("\n")).toMatch(/AUTHZ_GRPC_PORT must be between 0 and 65535, got 70000/);
    expect(problems.join("\n")).not.toContain("hunter2");
  });

  it("rejects equal ports and warns about unknown AUTHZ_ names without failing", () => {
    expect(() => loadConfig({ AUTHZ_GRPC_PORT: "9000", AUTHZ_HTTP_PORT: "9000" })).toThrow(/must differ/);
    const c = loadConfig({ AUTHZ_GRCP_PORT: "1", AUTHZ_SERVICE_HOST: "10.0.0.1" });
    expect(c.warnings).toEqual(["AUTHZ_GRCP_PORT is not a known setting and is ignored"]);
  });

  it("serves the console by default only in the embedded mode; AUTHZ_CONSOLE decides otherwise", () => {
    expect(loadConfig({}).console).toBe(true);
    expect(loadConfig({ DATABASE_URL: "postgres://h/d" }).console).toBe(false);
    expect(loadConfig({ DATABASE_URL: "postgres://h/d", AUTHZ_CONSOLE: "on" }).console).toBe(true);
    expect(loadConfig({ AUTHZ_CONSOLE: "off" }).console).toBe(false);
    expect(() => loadConfig({ AUTHZ_CONSOLE: "sometimes" })).toThrow(/AUTHZ_CONSOLE must be true or false/);
  });

  it("redacts passwords in URLs for logs", () => {
    expect(redactUrl("postgres://u:secret@h:5432/d")).toBe("postgres://u:REDACTED@h:5432/d");
    // libpq and the drivers also take the password (and TLS key passphrases) as query parameters.
    const q = redactUrl("postgres://u@h/d?password=QueryPw9&sslmode=require&sslpassword=K3y") as string;
    expect(q).not.toMatch(/QueryPw9|K3y/);
    expect(q).toContain("sslmode=require");
    expect(redactUrl("redis://h:6379/10?password=RedisPw3")).not.toContain("RedisPw3");
  });
});
