// Shared pieces of the pages: error and write-outcome panels, the read-only
// state a key without the admin scope ends up in, hash-route parameters.

import { ApiError } from "./api.js";
import { h, show } from "./dom.js";

let readOnlyBecause: string | undefined;

/** Set once the server refused a write for a missing scope: write buttons are then disabled. */
export function readOnly(): string | undefined {
  return readOnlyBecause;
}

export function resetReadOnly(): void {
  readOnlyBecause = undefined;
  document.body.classList.remove("read-only");
}

function markReadOnly(why: string): void {
  readOnlyBecause = why;
  document.body.classList.add("read-only");
  for (const b of document.querySelectorAll<HTMLButtonElement>("button.write")) b.disabled = true;
}

/** The panel for a failed call: code and message (the server's, which never holds data of other tenants). */
export function failure(err: unknown): HTMLElement {
  const e = err instanceof ApiError ? err : new ApiError("unknown", err instanceof Error ? err.message : String(err), undefined);
  return h("div", { class: "error", role: "alert", "data-code": e.code }, h("strong", {}, e.code.toUpperCase()), " ", e.message);
}

/** A write button: disabled while the console is read-only. */
export function writeButton(label: string, action: string, onClick: () => void): HTMLButtonElement {
  const b = h("button", { type: "button", class: "write", "data-action": action, onclick: onClick }, label);
  if (readOnlyBecause) {
    b.disabled = true;
    b.title = readOnlyBecause;
  }
  return b;
}

/**
 * Runs a write and reports it in `out`: the revision it committed at, then
 * whatever `readBack(revision)` renders (a read at least as fresh as it). A
 * PERMISSION_DENIED answer turns the console read-only.
 */
export async function runWrite(out: HTMLElement, write: () => Promise<{ revision: string }>, readBack: (revision: string) => Promise<void>): Promise<void> {
  show(out, h("p", { class: "pending" }, "Writing…"));
  let revision: string;
  try {
    revision = (await write()).revision;
  } catch (err) {
    if (err instanceof ApiError && err.code === "permission_denied") markReadOnly(err.message);
    show(out, failure(err));
    return;
  }
  show(out, h("p", { class: "written", "data-revision": revision }, "Written at revision ", h("strong", {}, revision), "; reading back at it."));
  await readBack(revision);
}

/** The parameters after "?" in the hash route (#/decision?subject=...). */
export function params(): URLSearchParams {
  const hash = location.hash.replace(/^#/, "");
  const q = hash.indexOf("?");
  return new URLSearchParams(q >= 0 ? hash.slice(q + 1) : "");
}

/** A link to a page with parameters. */
export function link(page: string, values: Record<string, string>, ...label: string[]): HTMLAnchorElement {
  return h("a", { href: `#/${page}?${new URLSearchParams(values).toString()}` }, ...label);
}

export function revisionBadge(revision: string | undefined): HTMLElement {
  return h("span", { class: "revision", "data-revision": revision ?? "" }, "revision ", h("strong", {}, revision ?? "—"));
}

/** A form's submit handler that stays on the page and runs `action`. */
export function submit(e: Event, action: () => unknown): void {
  e.preventDefault();
  void action();
}

/** A table of `header` and `rows`. */
export function table(cls: string, header: readonly string[], rows: HTMLElement[]): HTMLElement {
  return h("table", { class: cls }, h("thead", {}, h("tr", {}, ...header.map((t) => h("th", {}, t)))), h("tbody", {}, ...rows));
}

/**
 * One server page into `out`, with "Next page" following the server's token
 * (never more than one page in memory).
 */
export async function paged(
  out: HTMLElement,
  load: (token?: string) => Promise<{ body: HTMLElement; next?: string | undefined; revision?: string }>,
  token?: string,
): Promise<void> {
  try {
    const page = await load(token);
    const next = page.next;
    show(
      out,
      page.revision ? h("p", { class: "hint" }, "Read at ", revisionBadge(page.revision)) : null,
      page.body,
      next
        ? h("button", { type: "button", class: "next-page", onclick: () => void paged(out, load, next) }, "Next page")
        : h("p", { class: "hint" }, "Last page."),
    );
  } catch (err) {
    show(out, failure(err));
  }
}
