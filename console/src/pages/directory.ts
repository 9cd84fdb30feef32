// The directory, one level and one server page at a time: tenants →
// organizations → members (UserOrganizationInfo shape) or avatars; a user is
// found by email on the server. Needs the Directory API.

import { field, h, shortId, show } from "../dom.js";
import { getUser, listAvatars, listMembers, listOrganizations, listTenants } from "../rpcs-directory.js";
import { failure, link, paged, params, submit, table } from "../ui.js";

const PAGE_SIZE = 50;

const tenants = (token?: string) =>
  listTenants(PAGE_SIZE, token).then((p) => ({
    revision: p.revision,
    next: p.nextPageToken,
    body: table(
      "tenants",
      ["Tenant", "Slug", "Id", ""],
      (p.tenants ?? []).map((t) =>
        h(
          "tr",
          {},
          h("td", {}, t.name ?? ""),
          h("td", {}, t.slug ?? ""),
          h("td", {}, shortId(t.id)),
          h("td", {}, link("directory", { tenant: t.id }, "Organizations →")),
        ),
      ),
    ),
  }));

const organizations = (tenant: string) => (token?: string) =>
  listOrganizations(tenant, PAGE_SIZE, token).then((p) => ({
    revision: p.revision,
    next: p.nextPageToken,
    body: table(
      "organizations",
      ["Organization", "Slug", "Role structure", ""],
      (p.organizations ?? []).map((o) =>
        h(
          "tr",
          { "data-org": o.id },
          h("td", {}, o.name ?? ""),
          h("td", {}, o.slug ?? ""),
          h("td", {}, o.roleStructure ?? ""),
          h(
            "td",
            {},
            link("directory", { tenant, org: o.id }, "Members"),
            " · ",
            link("directory", { tenant, org: o.id, view: "avatars" }, "Avatars"),
            " · ",
            link("roles", { org: o.id }, "Roles"),
          ),
        ),
      ),
    ),
  }));

const members = (org: string) => (token?: string) =>
  listMembers(org, PAGE_SIZE, token).then((p) => ({
    revision: p.revision,
    next: p.nextPageToken,
    body: table(
      "members",
      ["User", "Role", "Role + inherited", "Additional roles", "Permissions"],
      (p.members ?? []).map((m) =>
        h(
          "tr",
          { "data-user": m.userId },
          h("td", {}, link("user", { id: m.userId }, m.userId)),
          h("td", {}, h("code", {}, m.userRole ?? "")),
          h("td", {}, (m.inheritedUserRolesPlusCurrentRole ?? []).join(", ")),
          h("td", {}, (m.additionalRoles ?? []).join(", ")),
          h("td", { class: "perms" }, (m.userPermissions ?? []).join(", ")),
        ),
      ),
    ),
  }));

const avatars = (org: string) => (token?: string) =>
  listAvatars(org, PAGE_SIZE, token).then((p) => ({
    revision: p.revision,
    next: p.nextPageToken,
    body: table(
      "avatars",
      ["Avatar", "Active", "Id", ""],
      (p.avatars ?? []).map((a) =>
        h(
          "tr",
          {},
          h("td", {}, a.handle ?? ""),
          h("td", {}, a.active ? "yes" : "no"),
          h("td", {}, shortId(a.id)),
          h("td", {}, link("avatar", { id: a.id }, "Memberships →")),
        ),
      ),
    ),
  }));

function findUser(): HTMLElement {
  const [emailL, email] = field("Find a user by email", "email", { placeholder: "name@example.com", size: 30 });
  const out = h("div", {});
  const go = async () => {
    try {
      const { user } = await getUser({ email: email.value.trim() });
      location.hash = `#/user?id=${encodeURIComponent(user.id)}`;
    } catch (err) {
      show(out, failure(err));
    }
  };
  return h("div", {}, h("form", { id: "find-user", onsubmit: (e: Event) => submit(e, go) }, emailL, h("button", { type: "submit" }, "Find")), out);
}

export function directoryPage(root: HTMLElement): void {
  const p = params();
  const tenant = p.get("tenant");
  const org = p.get("org");
  const out = h("section", { id: "directory" });
  const crumbs = h(
    "p",
    { class: "crumbs" },
    link("directory", {}, "Tenants"),
    tenant ? [" › ", link("directory", { tenant }, `tenant ${tenant.slice(0, 8)}…`)] : "",
    org
      ? [
          " › ",
          `organization ${org.slice(0, 8)}… (`,
          link("directory", { tenant: tenant ?? "", org }, "members"),
          ", ",
          link("directory", { tenant: tenant ?? "", org, view: "avatars" }, "avatars"),
          ")",
        ]
      : "",
  );
  show(root, h("h2", {}, "Directory"), findUser(), crumbs, out);
  const load = org ? (p.get("view") === "avatars" ? avatars(org) : members(org)) : tenant ? organizations(tenant) : tenants;
  void paged(out, load);
}
