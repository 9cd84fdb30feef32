// A subject's grants per scope (ListPermissions, one server page at a time,
// in the UserOrganizationInfo shape), and role assignment by hand: assign or
// unassign a role on a scope, then read the grants back at the write's
// revision.

import { choice, enumName, field, h, shortId, show } from "../dom.js";
import { listPermissions, manageRoles, type PermissionsPage, type Ref, type RoleMutation } from "../rpcs.js";
import { failure, link, params, submit, revisionBadge, runWrite, writeButton } from "../ui.js";

const PAGE_SIZE = 20;

function table(page: PermissionsPage): HTMLElement {
  const rows = (page.scopes ?? []).map((s) =>
    h(
      "tr",
      {},
      h("td", {}, s.orgName ?? "", " ", h("small", {}, s.urlSafeOrgName ?? "")),
      h("td", {}, s.scope ? `${s.scope.type} ` : "", shortId(s.scope?.id)),
      h("td", {}, h("code", {}, s.userRole ?? "")),
      h("td", {}, (s.inheritedUserRolesPlusCurrentRole ?? []).join(", ")),
      h("td", {}, (s.additionalRoles ?? []).join(", ")),
      h("td", { class: "perms" }, (s.userPermissions ?? []).join(", ")),
    ),
  );
  return h(
    "table",
    { class: "grants" },
    h("thead", {}, h("tr", {}, ...["Organization", "Scope", "Role", "Role + inherited", "Additional roles", "Permissions"].map((t) => h("th", {}, t)))),
    h("tbody", {}, ...rows),
  );
}

/** Renders pages of the subject's grants into `out`; "Next page" follows the server's token. */
async function grants(out: HTMLElement, subject: Ref, resource: Ref | undefined, revision?: string, token?: string): Promise<void> {
  let page: PermissionsPage;
  try {
    page = await listPermissions(subject, {
      ...(resource ? { resource } : {}),
      pageSize: PAGE_SIZE,
      ...(token ? { pageToken: token } : {}),
      ...(revision ? { revision } : {}),
    });
  } catch (err) {
    show(out, failure(err));
    return;
  }
  const status = enumName(page.subjectStatus, "DECISION_REASON_");
  const next = page.nextPageToken;
  show(
    out,
    h("p", {}, `${subject.type} `, h("code", {}, subject.id), " — status ", h("code", { "data-status": status }, status), " ", revisionBadge(page.revision)),
    table(page),
    next
      ? h("button", { type: "button", onclick: () => void grants(out, subject, resource, page.revision, next) }, "Next page")
      : h("p", { class: "hint" }, "Last page."),
  );
}

function assignForm(subject: () => Ref, out: HTMLElement, reload: (revision: string) => Promise<void>): HTMLElement {
  const [orgL, org] = field("Role's organization", "role-org", { placeholder: "UUID; empty for a global role" });
  const [keyL, key] = field("Role key", "role-key", { size: 20 });
  const [scopeTypeL, scopeType] = choice("Scope type", "scope-type", ["organization", "avatar", "tenant", "global"]);
  const [scopeIdL, scopeId] = field("Scope id", "scope-id", { placeholder: "UUID" });
  const parts = () => {
    const role = { key: { organizationId: org.value.trim(), key: key.value.trim() } };
    const scope = scopeType.value === "global" ? {} : { scope: { type: scopeType.value, id: scopeId.value.trim() } };
    return { subject: subject(), role, ...scope };
  };
  const write = (m: RoleMutation) => runWrite(out, () => manageRoles([m]), reload);
  return h(
    "fieldset",
    { class: "write-form" },
    h("legend", {}, "Assign or unassign a role (admin scope)"),
    orgL,
    keyL,
    scopeTypeL,
    scopeIdL,
    writeButton("Assign", "assign", () => void write({ assignRole: parts() })),
    " ",
    writeButton("Unassign", "unassign-role", () => void write({ unassignRole: parts() })),
  );
}

export function subjectPage(root: HTMLElement): void {
  const p = params();
  const [typeL, type] = choice("Subject type", "subject-type", ["user", "account", "principal", "staff"], p.get("type") ?? "user");
  const [idL, id] = field("Subject id", "subject-id", { value: p.get("id") ?? "", placeholder: "UUID" });
  const [resTypeL, resType] = choice("Within", "resource-type", ["(everything)", "tenant", "organization", "avatar"]);
  const [resIdL, resId] = field("Resource id", "resource-id", { placeholder: "UUID" });
  const out = h("section", { id: "grants" });
  const writeOut = h("div", { class: "write-out" });
  const subject = () => ({ type: type.value, id: id.value.trim() });
  const resource = () => (resType.value === "(everything)" ? undefined : { type: resType.value, id: resId.value.trim() });
  const load = (revision?: string) => grants(out, subject(), resource(), revision);
  show(
    root,
    h("h2", {}, "Grants of a subject"),
    h(
      "p",
      { class: "hint" },
      "ListPermissions: per organization and scope, the roles held (direct and inherited) and permissions; ",
      PAGE_SIZE,
      " organizations a page.",
    ),
    h("form", { id: "subject-form", onsubmit: (e: Event) => submit(e, load) }, typeL, idL, resTypeL, resIdL, h("button", { type: "submit" }, "Show grants")),
    assignForm(subject, writeOut, load),
    writeOut,
    out,
    h("p", {}, link("decision", { subjectType: type.value, subjectId: id.value }, "Run a decision for this subject →")),
  );
  if (id.value) void load();
}
