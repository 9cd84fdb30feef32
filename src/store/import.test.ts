import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { projectPath } from "../paths.js";
import { validateDocument } from "./import.js";
import { SECTIONS } from "./import-spec.js";

describe("validateDocument (no database)", () => {
  it("accepts the demo dataset, every section of both seeds present", () => {
    const doc = JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")) as Record<string, unknown>;
    const { problems, records } = validateDocument(doc);
    expect(problems).toEqual([]);
    expect(records.length).toBeGreaterThan(50);
    for (const section of Object.keys(SECTIONS)) expect(Object.keys(doc), section).toContain(section);
  });

  it("names every offending record and field at once", () => {
    const { problems } = validateDocument({
      TENANT: [{ id: "not-a-uuid", name: "T", slug: "t" }],
      User: [{ user_id: "00000000-0000-4000-8000-000000000001", locked: "yes", created_at: -5 }],
      ROLE: [{ id: "00000000-0000-4000-8000-000000000002", key: "admin", colour: "blue" }],
      Widgets: [],
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^unknown section "Widgets"/),
        "TENANT[0] (id=not-a-uuid): id must be a UUID",
        "User[0] (user_id=00000000-0000-4000-8000-000000000001): locked must be true or false",
        expect.stringMatching(/^User\[0\] .*created_at must be epoch seconds/),
        expect.stringMatching(/^ROLE\[0\] \(id=00000000-0000-4000-8000-000000000002, key=admin\): unknown field "colour"/),
      ]),
    );
    expect(problems).toHaveLength(5);
  });

  it("rejects a document that is not an object of sections", () => {
    expect(validateDocument([]).problems[0]).toMatch(/must be a JSON object/);
    expect(validateDocument({ TENANT: {} }).problems).toEqual(["section TENANT must be an array of records"]);
    expect(validateDocument({ TENANT: [{ name: "x", slug: "x" }] }).problems).toEqual(["TENANT[0]: id is required"]);
  });
});
