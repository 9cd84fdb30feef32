// Shared pieces of the pages: error and write-outcome panels, the read-only
// state of writes whose scope the key lacks, hash-route parameters.

import { ApiError } from "./api.js";
import { h, show } from "./dom.js";

/** Scopes the server said this key lacks (from a refused write), with the server's message. */
const missing = new Map<string, string>();

export function resetReadOnly(): void {
  missing.clear();
  document.body.classList.remove("read-only");
}

/** Disables every write button that needs `scope` (and, for "directory", those needing "admin" too: admin covers it). */
function markMissing(scope: string, why: string): void {
  missing.set(scope, why);
  if (scope === "directory") missing.set("admin", why);
  document.body.classList.add("read-only");
  for (const b of document.querySelectorAll<HTMLButtonElement>("button.write")) {
    if (missing.has(b.dataset.scope ?? "")) b.disabled = true;
  }
}

/** The panel for a failed call: code and message (the server's, which never holds data of other tenants). */
export function failure(err: unknown): HTMLElement {
  const e = err instanceof ApiError ? err : new ApiError("unknown", err instanceof Error ? err.message : String(err), undefined);
  return h("div", { class: "error", role: "alert", "data-code": e.code }, h("strong", {}, e.code.toUpperCase()), " ", e.message);
}

/** A write button for a write that needs `scope`: disabled once the server said this key lacks it. */
export function writeButton(label: string, action: string, onClick: () => void, scope = "admin"): HTMLButtonElement {
  const b = h("button", { type: "button", class: "write", "data-action": action, "data-scope": scope, onclick: onClick }, label);
  const why = missing.get(scope);
  if (why) {
    b.disabled = true;
    b.title = why;
  }
  return b;
}

/**
 * Runs a write and reports it in `out`: the revision it committed at, then
 * whatever `readBack(revision)` renders (a read at least as fresh as it). A
 * refusal for a missing scope disables the writes that need that scope.
 */
export async function runWrite(out: HTMLElement, write: () => Promise<{ revision: string }>, readBack: (revision: string) => Promise<void>): Promise<void> {
  show(out, h("p", { class: "pending" }, "Writing…"));
  let revision: string;
  try {
    revision = (await write()).revision;
  } catch (err) {
    // A missing scope makes every write needing it fail alike; another refusal (e.g. another tenant's data) concerns this write only.
    const scope = err instanceof ApiError && err.code === "permission_denied" ? /needs the "(\w+)" scope/.exec(err.message)?.[1] : undefined;
    if (scope) markMissing(scope, (err as ApiError).message);
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
