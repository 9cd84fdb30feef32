// Roles of an organization with their inheritance drawn as a graph; selecting
// a role highlights its closure (itself and every role it inherits) and lists
// the permissions that closure holds. Needs DirectoryService.ListRoles; roles
// arrive a server page at a time and "More roles" adds the next page. The
// global roles an organization's roles inherit are drawn too (key marked
// "(global)"), so that a closure holds every role and permission it grants.

import { field, h, show } from "../dom.js";
import { closureOf, drawRoles, type GraphRole } from "../graph.js";
import { listRoles, type Role } from "../rpcs.js";
import { failure, params, revisionBadge, submit } from "../ui.js";

const PAGE_SIZE = 200;

function render(out: HTMLElement, roles: Role[], revision: string, selected: string | undefined, more: (() => void) | undefined): void {
  const graphRoles: GraphRole[] = roles.map((r) => ({ id: r.id, key: r.key, parents: r.parentRoleIds ?? [] }));
  const byId = new Map(graphRoles.map((r) => [r.id, r]));
  const closure = selected ? closureOf(byId, selected) : new Set<string>();
  const held = roles.filter((r) => closure.has(r.id));
  const perms = [...new Set(held.flatMap((r) => r.permissionKeys ?? []))].sort();
  const pick = (id: string) => render(out, roles, revision, id, more);
  show(
    out,
    h("p", {}, `${roles.length} roles at `, revisionBadge(revision), more ? " (more on the server)" : ""),
    h("div", { class: "graph-box" }, drawRoles(graphRoles, selected, pick)),
    more ? h("button", { type: "button", onclick: more }, "More roles") : null,
    selected
      ? h(
          "div",
          { class: "closure", id: "role-closure" },
          h("h3", {}, "Closure of ", h("code", {}, byId.get(selected)?.key ?? selected)),
          h("p", {}, "Roles: ", held.map((r) => r.key).join(", ")),
          h("p", {}, "Permissions: ", perms.join(", ") || "none"),
        )
      : h("p", { class: "hint" }, "Select a role to highlight what it inherits."),
  );
}

/** At most this many global roles are read to draw an organization's roles' global parents. */
const MAX_GLOBAL_PAGES = 10;

/** Every global role (an organization's roles may inherit them), a page at a time. */
async function globalRoles(): Promise<Role[]> {
  const out: Role[] = [];
  let token: string | undefined;
  for (let i = 0; i < MAX_GLOBAL_PAGES; i++) {
    const page = await listRoles("", PAGE_SIZE, token);
    out.push(...(page.roles ?? []));
    token = page.nextPageToken;
    if (!token) break;
  }
  return out;
}

/** The global roles the organization's roles inherit, transitively, marked as global in their key. */
function inheritedGlobals(roles: Role[], globals: Role[]): Role[] {
  const byId = new Map(globals.map((g) => [g.id, g]));
  const have = new Set(roles.map((r) => r.id));
  const out: Role[] = [];
  const queue = roles.flatMap((r) => r.parentRoleIds ?? []);
  for (let id = queue.pop(); id !== undefined; id = queue.pop()) {
    const g = byId.get(id);
    if (!g || have.has(id)) continue;
    have.add(id);
    out.push({ ...g, key: `${g.key} (global)` });
    queue.push(...(g.parentRoleIds ?? []));
  }
  return out;
}

async function load(out: HTMLElement, orgId: string, roles: Role[] = [], token?: string, globals?: Role[]): Promise<void> {
  try {
    const page = await listRoles(orgId, PAGE_SIZE, token);
    const all = [...roles, ...(page.roles ?? [])];
    const next = page.nextPageToken;
    // An organization's roles may inherit global roles: drawn beside them, so that a closure is whole.
    const global = orgId === "" ? [] : (globals ?? (await globalRoles()));
    const shown = [...all, ...inheritedGlobals(all, global)];
    render(out, shown, page.revision, undefined, next ? () => void load(out, orgId, all, next, global) : undefined);
  } catch (err) {
    show(out, failure(err));
  }
}

export function rolesPage(root: HTMLElement): void {
  const [orgL, org] = field("Organization id", "organization-id", { value: params().get("org") ?? "", placeholder: "UUID; empty for global roles" });
  const out = h("section", { id: "roles" });
  show(
    root,
    h("h2", {}, "Roles"),
    h("p", { class: "hint" }, "An arrow points from a role to the role it inherits."),
    h("form", { id: "roles-form", onsubmit: (e: Event) => submit(e, () => load(out, org.value.trim())) }, orgL, h("button", { type: "submit" }, "Show roles")),
    out,
  );
  if (org.value) void load(out, org.value.trim());
}
