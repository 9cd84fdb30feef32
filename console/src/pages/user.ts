// One user: its record (GetUser) with lock/unlock and enable/disable by hand
// (ManageDirectory set_user_status), read back at the write's revision; links
// to its grants and to a decision for it.

import { h, show } from "../dom.js";
import { getUser, manageDirectory, type User } from "../rpcs-directory.js";
import { failure, link, params, revisionBadge, runWrite, writeButton } from "../ui.js";

function record(u: User, revision: string): HTMLElement {
  const rows: Array<[string, string]> = [
    ["Email", u.email ?? ""],
    ["Username", u.username ?? ""],
    ["Name", `${u.firstName ?? ""} ${u.lastName ?? ""}`.trim()],
    ["Locked", u.locked ? "yes" : "no"],
    ["Enabled", u.enabled ? "yes" : "no"],
    ["Last active", u.lastActiveAt ?? "—"],
  ];
  return h(
    "div",
    { class: "record", "data-locked": String(u.locked === true), "data-enabled": String(u.enabled === true) },
    h("p", {}, "User ", h("code", {}, u.id), " at ", revisionBadge(revision)),
    h("table", { class: "fields" }, h("tbody", {}, ...rows.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v))))),
  );
}

async function load(out: HTMLElement, actions: HTMLElement, writeOut: HTMLElement, id: string, revision?: string): Promise<void> {
  let user: User;
  let rev: string;
  try {
    ({ user, revision: rev } = await getUser({ id }, revision));
  } catch (err) {
    show(out, failure(err));
    return;
  }
  show(out, record(user, rev));
  const status = (change: { locked?: boolean; enabled?: boolean }) => () =>
    void runWrite(
      writeOut,
      () => manageDirectory([{ setUserStatus: { userId: id, ...change } }]),
      (at) => load(out, actions, writeOut, id, at),
    );
  show(
    actions,
    user.locked ? writeButton("Unlock", "unlock", status({ locked: false }), "directory") : writeButton("Lock", "lock", status({ locked: true }), "directory"),
    " ",
    user.enabled
      ? writeButton("Disable", "disable", status({ enabled: false }), "directory")
      : writeButton("Enable", "enable", status({ enabled: true }), "directory"),
    " ",
    link("subject", { type: "user", id }, "Grants →"),
    " ",
    link("decision", { subjectType: "user", subjectId: id, ...(revision ? { revision } : {}) }, "Run a decision →"),
  );
}

export function userPage(root: HTMLElement): void {
  const id = params().get("id") ?? "";
  const out = h("section", { id: "user" });
  const actions = h("div", { class: "actions" });
  const writeOut = h("div", { class: "write-out" });
  show(root, h("h2", {}, "User"), out, actions, writeOut);
  if (id) void load(out, actions, writeOut, id);
  else show(out, h("p", { class: "hint" }, "Open a user from the directory, or find one by email there."));
}
