// Roles of an organization with their inheritance drawn as a graph; selecting
// a role highlights its closure (itself and every role it inherits) and lists
// the permissions that closure holds. Needs DirectoryService.ListRoles; roles
// arrive a server page at a time and "More roles" adds the next page.

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

async function load(out: HTMLElement, orgId: string, roles: Role[] = [], token?: string): Promise<void> {
  try {
    const page = await listRoles(orgId, PAGE_SIZE, token);
    const all = [...roles, ...(page.roles ?? [])];
    const next = page.nextPageToken;
    render(out, all, page.revision, undefined, next ? () => void load(out, orgId, all, next) : undefined);
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
