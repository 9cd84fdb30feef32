import { describe, expect, it } from "vitest";
import type { ExportPage } from "../store/export.js";
import { pageChannel } from "./export-handlers.js";

const page = (n: number): ExportPage => ({ section: "User", records: [{ n }] });

describe("the export's page channel", () => {
  it("hands pages over one at a time: the export waits while a page is unread", async () => {
    const produced: number[] = [];
    let finished = false;
    const channel = pageChannel(async (onPage) => {
      for (let n = 1; n <= 3; n++) {
        produced.push(n);
        await onPage(page(n), "7");
      }
      finished = true;
    });
    const first = await channel.next();
    expect(first).toEqual({ page: page(1), revision: "7" });
    // The export has produced at most one page beyond what was taken.
    expect(produced.length).toBeLessThanOrEqual(2);
    expect((await channel.next())?.page).toEqual(page(2));
    expect((await channel.next())?.page).toEqual(page(3));
    expect(await channel.next()).toBeUndefined();
    expect(finished).toBe(true);
  });

  it("an abandoned stream makes the export fail at its next page (its transaction rolls back), and never hangs it", async () => {
    let outcome: unknown = "running";
    let release: () => void = () => {};
    const settled = new Promise<void>((resolve) => {
      release = resolve;
    });
    const channel = pageChannel((onPage) =>
      (async () => {
        for (let n = 1; n <= 1000; n++) await onPage(page(n), "1");
      })().then(
        () => {
          outcome = "completed";
          release();
        },
        (err: unknown) => {
          outcome = err;
          release();
          throw err;
        },
      ),
    );
    expect((await channel.next())?.page).toEqual(page(1));
    channel.abandon();
    await settled;
    expect(outcome).toBeInstanceOf(Error);
    expect((outcome as Error).message).toMatch(/abandoned/);
  });

  it("an export that fails reaches the reader as the error", async () => {
    const channel = pageChannel(async (onPage) => {
      await onPage(page(1), "1");
      throw new Error("database gone");
    });
    expect((await channel.next())?.page).toEqual(page(1));
    await expect(channel.next()).rejects.toThrow("database gone");
  });
});
