import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { AuthzError } from "../errors.js";
import { createLogger } from "../logger.js";
import { MAX_MESSAGE_CHARS, statusDetailsBin, toPublicError } from "./errors.js";

describe("toPublicError", () => {
  const log = createLogger("silent");
  it("never hands a caller more than a bounded message or metadata, whatever the error quotes", () => {
    const quoted = "q".repeat(64 * 1024);
    const e = toPublicError(new AuthzError("NOT_FOUND", `no ${quoted}`, { metadata: { field: quoted } }), log, "r", "/p");
    expect(e.message.length).toBeLessThanOrEqual(MAX_MESSAGE_CHARS + 1);
    expect(e.metadata["field"]?.length).toBeLessThanOrEqual(257);
    expect(statusDetailsBin(e).length).toBeLessThan(2048);
    const c = toPublicError(new ConnectError(quoted, Code.NotFound), log, "r", "/p");
    expect(c.message.length).toBeLessThanOrEqual(MAX_MESSAGE_CHARS + 1);
  });
});
