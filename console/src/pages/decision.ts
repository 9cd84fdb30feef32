// The decision page: pick subject, permission and resource; see allowed or
// denied with the explain path (assignment → role → inherited roles →
// permission) or the reason it failed. An allow through an assignment offers
// to remove that assignment; the decision is then run again at the write's
// revision, so the operator sees it flip (or find another path).

import { has } from "../api.js";
import { choice, enumName, field, h, show } from "../dom.js";
import { drawPath, type PathNode } from "../graph.js";
import { type CheckAnswer, check, type ExplanationStep, manageRoles, type Ref } from "../rpcs.js";
import { DIRECTORY_PATHS, getUser, manageDirectory } from "../rpcs-directory.js";
import { failure, link, params, revisionBadge, runWrite, writeButton } from "../ui.js";

const SUBJECT_TYPES = ["user", "account", "principal", "staff"] as const;
const RESOURCE_TYPES = ["organization", "avatar", "tenant"] as const;

const short = (id: string) => (id.length > 12 ? `${id.slice(0, 8)}…` : id);
const scopeText = (s: Ref | undefined) => (s ? `${s.type} ${short(s.id)}` : "global");

function nodeOf(step: ExplanationStep): PathNode {
  const kind = enumName(step.kind, "EXPLANATION_STEP_KIND_");
  const tooltip = `${kind} ${step.key ?? ""} ${step.id ?? ""}${step.scope ? ` on ${step.scope.type} ${step.scope.id}` : ""}`;
  if (kind === "ASSIGNMENT" || kind === "MEMBERSHIP") return { kind, label: scopeText(step.scope), tooltip };
  return { kind: kind.replace("_", " "), label: step.key || step.id || "", tooltip };
}

interface Question {
  subject: Ref;
  permission: string;
  resource: Ref;
}

function verdict(q: Question, a: CheckAnswer): HTMLElement {
  const allowed = a.allowed === true;
  const reason = enumName(a.reason, "DECISION_REASON_");
  const steps = a.explanation?.steps ?? [];
  const subjectNode: PathNode = { kind: q.subject.type.toUpperCase(), label: short(q.subject.id), tooltip: `${q.subject.type} ${q.subject.id}` };
  const nodes = allowed ? [subjectNode, ...steps.map(nodeOf)] : [subjectNode, { kind: "DENIED", label: reason, tooltip: a.explanation?.message ?? reason }];
  return h(
    "div",
    { class: `verdict ${allowed ? "allowed" : "denied"}`, "data-allowed": String(allowed), "data-reason": reason },
    h("p", {}, h("span", { class: "badge" }, allowed ? "ALLOWED" : "DENIED"), " ", h("code", {}, reason), " ", revisionBadge(a.revision)),
    h("div", { class: "path-box" }, drawPath(nodes)),
    h("p", { class: "message" }, a.explanation?.message ?? ""),
  );
}

/** The write that removes the grant an allow came through: its assignment, or (with the Directory API) its membership. */
function undoGrant(steps: ExplanationStep[]): { label: string; action: string; scope: string; write: () => Promise<{ revision: string }> } | undefined {
  const grant = steps.find((s) => s.id && (s.kind === "EXPLANATION_STEP_KIND_ASSIGNMENT" || s.kind === "EXPLANATION_STEP_KIND_MEMBERSHIP"));
  const id = grant?.id;
  if (!id) return undefined;
  if (grant.kind === "EXPLANATION_STEP_KIND_ASSIGNMENT") {
    return { label: "Unassign the granting role", action: "unassign", scope: "admin", write: () => manageRoles([{ unassignRole: { assignmentId: id } }]) };
  }
  if (!has(DIRECTORY_PATHS.manageDirectory)) return undefined;
  return {
    label: "Revoke the granting membership",
    action: "revoke-membership",
    scope: "directory",
    write: () => manageDirectory([{ revokeMembership: { id } }]),
  };
}

async function decide(out: HTMLElement, q: Question, revision?: string, note?: HTMLElement): Promise<void> {
  let a: CheckAnswer;
  try {
    a = await check(q.subject, q.permission, q.resource, revision);
  } catch (err) {
    out.append(failure(err));
    return;
  }
  const actions = h("div", { class: "actions" }, link("subject", { type: q.subject.type, id: q.subject.id }, "Grants of this subject →"));
  const writeOut = h("div", { class: "write-out" });
  const undo = a.allowed ? undoGrant(a.explanation?.steps ?? []) : undefined;
  if (undo) {
    const button = writeButton(undo.label, undo.action, () => {
      button.disabled = true;
      void runWrite(writeOut, undo.write, (rev) =>
        decide(writeOut, q, rev, h("p", { class: "note" }, `The same decision at least as fresh as revision ${rev}:`)),
      );
    });
    actions.prepend(button, " ");
  }
  out.append(...(note ? [note] : []), verdict(q, a), actions, writeOut);
}

/** The email lookup in flight, if any: a decision waits for it, so that it is asked about the user the email names. */
interface Lookup {
  pending: Promise<void> | undefined;
}

/** With the Directory API: an email field that fills the subject with that user's id (asked on the server). */
function userByEmail(subjectType: HTMLSelectElement, subjectId: HTMLInputElement, lookup: Lookup): HTMLElement | null {
  if (!has(DIRECTORY_PATHS.getUser)) return null;
  const [emailL, email] = field("…or the user with email", "subject-email", { placeholder: "name@example.com", size: 24 });
  const out = h("span", { class: "inline-error" });
  email.addEventListener("change", () => {
    show(out);
    if (!email.value.trim()) return;
    lookup.pending = (async () => {
      try {
        subjectId.value = (await getUser({ email: email.value.trim() })).user.id;
        subjectType.value = "user";
      } catch (err) {
        // No user with that email: no subject either, rather than the one asked about before.
        subjectId.value = "";
        show(out, failure(err));
      }
    })();
  });
  return h("span", { class: "by-email" }, emailL, out);
}

/** The last question asked (in memory): a link naming only the subject asks it again, e.g. after locking that user. */
let last: Question | undefined;

export function decisionPage(root: HTMLElement): void {
  const p = params();
  const again = last && p.get("subjectId") === last.subject.id && !p.get("permission") ? last : undefined;
  const [subjectTypeL, subjectType] = choice("Subject type", "subject-type", SUBJECT_TYPES, p.get("subjectType") ?? "user");
  const [subjectIdL, subjectId] = field("Subject id", "subject-id", { value: p.get("subjectId") ?? "", placeholder: "UUID" });
  const [permL, permission] = field("Permission", "permission", {
    value: p.get("permission") ?? again?.permission ?? "",
    placeholder: "e.g. members.read",
    size: 24,
  });
  const [resTypeL, resourceType] = choice("Resource type", "resource-type", RESOURCE_TYPES, p.get("resourceType") ?? again?.resource.type ?? "organization");
  const [resIdL, resourceId] = field("Resource id", "resource-id", { value: p.get("resourceId") ?? again?.resource.id ?? "", placeholder: "UUID" });
  const out = h("section", { id: "decision-result" });
  // A link from a write carries its revision: the first answer is at least as fresh as it.
  let atRevision = p.get("revision") ?? undefined;
  const lookup: Lookup = { pending: undefined };
  const run = async (e?: Event) => {
    e?.preventDefault();
    // Enter in the email field submits while its lookup is still out: ask once it has filled in the subject.
    await lookup.pending;
    const q = {
      subject: { type: subjectType.value, id: subjectId.value.trim() },
      permission: permission.value.trim(),
      resource: { type: resourceType.value, id: resourceId.value.trim() },
    };
    last = q;
    show(out);
    void decide(out, q, atRevision);
    atRevision = undefined;
  };
  show(
    root,
    h("h2", {}, "Decision"),
    h("p", { class: "hint" }, "Check with explain: the path that allowed the request, or the first rule that denied it."),
    h(
      "form",
      { id: "decision-form", onsubmit: run },
      subjectTypeL,
      subjectIdL,
      userByEmail(subjectType, subjectId, lookup),
      permL,
      resTypeL,
      resIdL,
      h("button", { type: "submit", id: "decide" }, "Decide"),
    ),
    out,
  );
  // Opened from a link (who-can, a user) with the whole question: answer it at once.
  if (subjectId.value && permission.value && resourceId.value) void run();
}
