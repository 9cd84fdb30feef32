// The console's entry: the sign-in form, the navigation between pages (hash
// routes) and the list of pages this server cannot serve because an RPC they
// need is not bound here.

import { ApiError, has, loadMethods, signedIn, signIn, signOut } from "./api.js";
import { h, show } from "./dom.js";
import { avatarPage } from "./pages/avatar.js";
import { decisionPage } from "./pages/decision.js";
import { directoryPage } from "./pages/directory.js";
import { rateLimitsPage, stopRateLimits } from "./pages/ratelimits.js";
import { rolesPage } from "./pages/roles.js";
import { subjectPage } from "./pages/subject.js";
import { transfersPage } from "./pages/transfers.js";
import { userPage } from "./pages/user.js";
import { whoCanPage } from "./pages/whocan.js";
import { PATHS } from "./rpcs.js";
import { DIRECTORY_PATHS as D } from "./rpcs-directory.js";
import { failure, resetReadOnly, submit } from "./ui.js";

interface Page {
  id: string;
  title: string;
  /** RPC paths the page needs; it is offered only when the server binds them all. */
  needs: readonly string[];
  render(root: HTMLElement): void;
  /** Reached through links only, not listed in the navigation. */
  linked?: boolean;
}

const PAGES: readonly Page[] = [
  {
    id: "directory",
    title: "Directory",
    needs: [D.listTenants, D.listOrganizations, D.listOrganizationMembers, D.listAvatars, D.getUser],
    render: directoryPage,
  },
  { id: "user", title: "User", needs: [D.getUser, D.manageDirectory], render: userPage, linked: true },
  { id: "avatar", title: "Avatar", needs: [D.getAvatar, D.listMemberships, D.manageDirectory], render: avatarPage, linked: true },
  { id: "decision", title: "Decision", needs: [PATHS.check], render: decisionPage },
  { id: "whocan", title: "Who can", needs: [D.lookupSubjects], render: whoCanPage },
  { id: "subject", title: "Grants", needs: [PATHS.listPermissions], render: subjectPage },
  { id: "roles", title: "Roles", needs: [PATHS.listRoles], render: rolesPage },
  { id: "transfers", title: "Transfers", needs: [PATHS.listOwnershipTransfers], render: transfersPage },
  { id: "ratelimits", title: "Rate limits", needs: [PATHS.getRateLimitCounters], render: rateLimitsPage },
];

const app = document.getElementById("app") as HTMLElement;
const nav = document.getElementById("nav") as HTMLElement;

const available = () => PAGES.filter((p) => p.needs.every(has));

function route(): void {
  stopRateLimits();
  if (!signedIn()) return signInForm();
  const id = location.hash.replace(/^#\/?/, "").split("?")[0] || "decision";
  const page = available().find((p) => p.id === id) ?? available().find((p) => p.id === "decision") ?? available()[0];
  for (const a of nav.querySelectorAll("a")) a.classList.toggle("current", a.dataset.page === page?.id);
  if (page) page.render(app);
  else show(app, h("p", {}, "This server binds none of the RPCs the console's pages need."));
}

function navigation(): void {
  const missing = PAGES.filter((p) => !p.linked && !p.needs.every(has));
  show(
    nav,
    ...available()
      .filter((p) => !p.linked)
      .map((p) => h("a", { href: `#/${p.id}`, "data-page": p.id }, p.title)),
    h(
      "button",
      {
        type: "button",
        id: "sign-out",
        onclick: () => {
          signOut();
          show(nav);
          route();
        },
      },
      "Sign out",
    ),
    missing.length
      ? h(
          "small",
          { class: "missing", title: missing.map((p) => `${p.title}: needs ${p.needs.join(", ")}`).join("\n") },
          `Not on this server: ${missing.map((p) => p.title).join(", ")}`,
        )
      : null,
  );
}

function signInForm(): void {
  const key = h("input", { type: "password", name: "api-key", id: "api-key", autocomplete: "off", size: 60, placeholder: "azk_…" });
  const out = h("div", {});
  const go = async () => {
    try {
      await loadMethods();
    } catch (err) {
      show(out, failure(err instanceof ApiError ? err : new ApiError("unavailable", String(err), undefined)));
      return;
    }
    signIn(key.value);
    key.value = "";
    resetReadOnly();
    navigation();
    route();
  };
  show(
    app,
    h("h2", {}, "Sign in"),
    h(
      "p",
      { class: "hint" },
      "Paste an API key. It stays in this page's memory only (never in the address, storage or a cookie): reloading the page signs you out. ",
      "Every call goes through the server's credential and scope checks; a key without the admin scope can read but not write. ",
      "Leave it empty only for a server running with AUTHZ_AUTH=off (the embedded development mode).",
    ),
    h("form", { id: "sign-in", onsubmit: (e: Event) => submit(e, go) }, key, " ", h("button", { type: "submit" }, "Sign in")),
    out,
  );
}

window.addEventListener("hashchange", route);
route();
