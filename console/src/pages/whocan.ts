// Who can do a permission on a resource (LookupSubjects, with the grant that
// gives it), a page at a time at one revision; each subject links to the
// decision page, which draws why.

import { choice, enumName, field, h, shortId } from "../dom.js";
import { lookupSubjects } from "../rpcs-directory.js";
import { link, paged, params, submit, table } from "../ui.js";

const PAGE_SIZE = 50;

export function whoCanPage(root: HTMLElement): void {
  const p = params();
  const [permL, permission] = field("Permission", "permission", { value: p.get("permission") ?? "", size: 24 });
  const [typeL, resourceType] = choice("Resource type", "resource-type", ["organization", "avatar", "tenant"], p.get("resourceType") ?? "organization");
  const [idL, resourceId] = field("Resource id", "resource-id", { value: p.get("resourceId") ?? "", placeholder: "UUID" });
  const [subjL, subjectType] = choice("Subjects", "subject-type", ["(every type)", "user", "account", "principal", "staff"]);
  const out = h("section", { id: "who-can" });
  const run = () => {
    const resource = { type: resourceType.value, id: resourceId.value.trim() };
    const perm = permission.value.trim();
    return paged(out, (token) =>
      lookupSubjects({
        permission: perm,
        resource,
        ...(subjectType.value.startsWith("(") ? {} : { subjectType: subjectType.value }),
        pageSize: PAGE_SIZE,
        ...(token ? { pageToken: token } : {}),
      }).then((page) => ({
        revision: page.revision,
        next: page.nextPageToken,
        body: table(
          "who-can",
          ["Subject", "Id", "Through", ""],
          (page.subjects ?? []).map((s) =>
            h(
              "tr",
              { "data-subject": s.subject.id },
              h("td", {}, s.subject.type),
              h("td", {}, h("code", {}, s.subject.id)),
              h("td", {}, enumName(s.grant?.kind, "LOOKUP_GRANT_KIND_"), " ", shortId(s.grant?.id)),
              h(
                "td",
                {},
                link(
                  "decision",
                  { subjectType: s.subject.type, subjectId: s.subject.id, permission: perm, resourceType: resource.type, resourceId: resource.id },
                  "Why →",
                ),
              ),
            ),
          ),
        ),
      })),
    );
  };
  root.replaceChildren(
    h("h2", {}, "Who can"),
    h("p", { class: "hint" }, "Every subject whose Check is GRANTED, at one revision, ", PAGE_SIZE, " a page."),
    h("form", { id: "who-can-form", onsubmit: (e: Event) => submit(e, run) }, permL, typeL, idL, subjL, h("button", { type: "submit" }, "Look up")),
    out,
  );
}
