// One avatar: its record and current owner (GetAvatar), its memberships a
// page at a time (ListMemberships), and the membership writes an operator
// does by hand (invite, accept, revoke; ManageDirectory), each read back at
// its revision. Transfers of the avatar are one link away.

import { field, h, shortId, show } from "../dom.js";
import { getAvatar, listMemberships, manageDirectory, type DirectoryMutation, type Membership } from "../rpcs-directory.js";
import { has } from "../api.js";
import { PATHS } from "../rpcs.js";
import { history } from "./transfers.js";
import { failure, link, paged, params, revisionBadge, runWrite, table, writeButton } from "../ui.js";

const PAGE_SIZE = 25;

function rows(list: Membership[], write: (m: DirectoryMutation) => void): HTMLElement[] {
  return list.map((m) =>
    h(
      "tr",
      { "data-membership": m.id, "data-principal": m.principalId },
      h("td", {}, shortId(m.id)),
      h("td", {}, shortId(m.principalId)),
      h("td", {}, m.owner ? "owner" : ""),
      h("td", {}, m.active ? "active" : "inactive"),
      h("td", {}, m.acceptedAt ?? "invited"),
      h("td", {}, m.validUntil ?? "—"),
      h(
        "td",
        {},
        m.acceptedAt ? null : writeButton("Accept", "accept", () => write({ acceptMembership: { id: m.id } }), "directory"),
        " ",
        m.owner ? null : writeButton("Revoke", "revoke", () => write({ revokeMembership: { id: m.id } }), "directory"),
      ),
    ),
  );
}

export function avatarPage(root: HTMLElement): void {
  const id = params().get("id") ?? "";
  const head = h("section", { id: "avatar" });
  const list = h("section", { id: "memberships" });
  const transfers = h("section", { id: "avatar-transfers" });
  const writeOut = h("div", { class: "write-out" });
  const [principalL, principal] = field("Principal to invite", "principal-id", { placeholder: "UUID" });
  const write = (m: DirectoryMutation) =>
    void runWrite(
      writeOut,
      () => manageDirectory([m]),
      (rev) => load(rev),
    );
  const load = async (revision?: string) => {
    try {
      const a = await getAvatar(id, revision);
      show(
        head,
        h(
          "p",
          {},
          "Avatar ",
          h("strong", {}, a.avatar.handle ?? ""),
          " ",
          shortId(a.avatar.id),
          a.avatar.active ? "" : " (inactive)",
          " at ",
          revisionBadge(a.revision),
        ),
        h("p", {}, "Current owner membership: ", shortId(a.owner?.id), " · ", link("transfers", { avatar: id }, "Ownership transfers →")),
      );
    } catch (err) {
      show(head, failure(err));
    }
    await paged(list, (token) =>
      listMemberships(id, PAGE_SIZE, token, revision).then((p) => ({
        revision: p.revision,
        next: p.nextPageToken,
        body: table("memberships", ["Membership", "Principal", "Owner", "Status", "Accepted", "Valid until", ""], rows(p.memberships ?? [], write)),
      })),
    );
  };
  show(
    root,
    h("h2", {}, "Avatar"),
    head,
    h(
      "fieldset",
      { class: "write-form" },
      h("legend", {}, "Invite a principal (directory or admin scope)"),
      principalL,
      writeButton("Invite", "invite", () => write({ inviteMembership: { avatarId: id, principalId: principal.value.trim() } }), "directory"),
    ),
    writeOut,
    list,
    h("h3", {}, "Ownership transfers, newest first"),
    transfers,
  );
  if (id) void load();
  if (id && has(PATHS.listOwnershipTransfers)) void history(transfers, id);
}
