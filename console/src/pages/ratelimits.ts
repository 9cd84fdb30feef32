// Rate limits: the live counters of a user, organization or key
// (GetRateLimitCounters, nothing consumed), refreshed on demand or every two
// seconds while "live" is ticked and the page is open.

import { has } from "../api.js";
import { choice, enumName, field, h, show } from "../dom.js";
import { type Counter, getRateLimitCounters } from "../rpcs.js";
import { LIST_RATE_LIMIT_POLICIES, listRateLimitPolicies } from "../rpcs-directory.js";
import { failure, paged, params, revisionBadge, submit, table } from "../ui.js";

let timer: ReturnType<typeof setInterval> | undefined;

/** Stops the live refresh (called when the page changes). */
export function stopRateLimits(): void {
  if (timer !== undefined) clearInterval(timer);
  timer = undefined;
}

function meter(c: Counter): HTMLElement {
  const limit = Number(c.limit ?? 0);
  const used = limit - Number(c.remaining ?? 0);
  const pct = limit > 0 ? Math.min(100, Math.round((used / limit) * 100)) : 0;
  return h(
    "div",
    { class: "meter", title: `${used} of ${limit} used` },
    h("div", { class: `fill p${Math.round(pct / 10) * 10}` }),
    h("span", {}, `${used} / ${limit}`),
  );
}

function counterTable(counters: Counter[]): HTMLElement {
  if (counters.length === 0) return h("p", { class: "hint" }, "No policy is assigned to this subject (calls are not limited).");
  return h(
    "table",
    { class: "counters" },
    h(
      "thead",
      {},
      h("tr", {}, ...["Policy", "Algorithm", "Whose counter", "Used", "Remaining", "Window start", "Resets in", "Previous window"].map((t) => h("th", {}, t))),
    ),
    h(
      "tbody",
      {},
      ...counters.map((c) =>
        h(
          "tr",
          { "data-policy": c.policy },
          h("td", {}, h("code", {}, c.policy)),
          h("td", {}, enumName(c.algorithm, "RATE_LIMIT_ALGORITHM_")),
          h("td", {}, c.subject ? `${c.subject.type} ${c.subject.id}` : ""),
          h("td", {}, meter(c)),
          h("td", {}, c.remaining ?? "0"),
          h("td", {}, c.windowStart ?? "—"),
          h("td", {}, c.resetAfter ?? "—"),
          h("td", {}, c.previousCount ?? "0"),
        ),
      ),
    ),
  );
}

/** The policies themselves (DirectoryService.ListRateLimitPolicies), 50 a page, when the server has the Directory API. */
function policies(): HTMLElement {
  const out = h("section", { id: "policies" });
  if (!has(LIST_RATE_LIMIT_POLICIES)) return out;
  void paged(out, (token) =>
    listRateLimitPolicies(50, token).then((p) => ({
      revision: p.revision,
      next: p.nextPageToken,
      body: table(
        "policies",
        ["Policy", "Scope", "Limit", "Algorithm", "When Redis is down", "Shadow", "Description"],
        (p.policies ?? []).map((r) =>
          h(
            "tr",
            { "data-policy": r.name },
            h("td", {}, h("code", {}, r.name)),
            h("td", {}, r.scope ?? ""),
            h("td", {}, `${r.limitCount ?? 0} per ${r.windowSec ?? 0} s`),
            h("td", {}, r.algorithm ?? ""),
            h("td", {}, r.failureMode ?? ""),
            h("td", {}, r.shadow ? "yes" : "no"),
            h("td", {}, r.description ?? ""),
          ),
        ),
      ),
    })),
  );
  return out;
}

export function rateLimitsPage(root: HTMLElement): void {
  const p = params();
  const [typeL, type] = choice("Subject type", "subject-type", ["user", "organization", "key"], p.get("type") ?? "user");
  const [idL, id] = field("Subject id", "subject-id", { value: p.get("id") ?? "", placeholder: "UUID, or any key" });
  const [policyL, policy] = field("Policy", "policy", { placeholder: "empty: every assigned policy", size: 24 });
  const [orgL, org] = field("Organization context", "organization-id", { placeholder: "UUID (optional, user subjects)" });
  const live = h("input", { type: "checkbox", name: "live" });
  const out = h("section", { id: "counters" });
  const load = async () => {
    try {
      const res = await getRateLimitCounters({
        subject: { type: type.value, id: id.value.trim() },
        ...(policy.value.trim() ? { policy: policy.value.trim() } : {}),
        ...(org.value.trim() ? { organizationId: org.value.trim() } : {}),
      });
      show(
        out,
        h("p", {}, "Policies at ", revisionBadge(res.revision), `; counters read at ${new Date().toLocaleTimeString()}.`),
        counterTable(res.counters ?? []),
      );
    } catch (err) {
      show(out, failure(err));
    }
  };
  live.addEventListener("change", () => {
    stopRateLimits();
    if (live.checked) timer = setInterval(() => void load(), 2000);
  });
  show(
    root,
    h("h2", {}, "Rate limits"),
    h("p", { class: "hint" }, "Live counters of every policy assigned to the subject (or one named policy); reading consumes nothing."),
    h(
      "form",
      { id: "ratelimit-form", onsubmit: (e: Event) => submit(e, load) },
      typeL,
      idL,
      policyL,
      orgL,
      h("button", { type: "submit" }, "Read counters"),
      h("label", { class: "inline" }, live, " live (every 2 s)"),
    ),
    out,
    has(LIST_RATE_LIMIT_POLICIES) ? h("h3", {}, "Policies") : null,
    policies(),
  );
}
