// Ownership transfers of an avatar: its history a page at a time, newest
// first (ListOwnershipTransfers), and starting a transfer by hand
// (TransferOwnership, immediate or as a request), read back after the write.

import { choice, enumName, field, h, shortId, show } from "../dom.js";
import { listOwnershipTransfers, type Transfer, transferOwnership } from "../rpcs.js";
import { failure, params, runWrite, submit, writeButton } from "../ui.js";

const PAGE_SIZE = 10;

function transferTable(list: Transfer[]): HTMLElement {
  if (list.length === 0) return h("p", { class: "hint" }, "No transfers recorded for this avatar.");
  return h(
    "table",
    { class: "transfers" },
    h("thead", {}, h("tr", {}, ...["Transfer", "Status", "From membership", "To membership", "Requested", "Settled", "Expires"].map((t) => h("th", {}, t)))),
    h(
      "tbody",
      {},
      ...list.map((t) =>
        h(
          "tr",
          { "data-transfer": t.id },
          h("td", {}, shortId(t.id)),
          h("td", {}, enumName(t.status, "TRANSFER_STATUS_")),
          h("td", {}, shortId(t.fromMembershipId)),
          h("td", {}, shortId(t.toMembershipId)),
          h("td", {}, t.createdAt ?? ""),
          h("td", {}, t.occurredAt ?? "—"),
          h("td", {}, t.expiresAt ?? "—"),
        ),
      ),
    ),
  );
}

/** One page of an avatar's transfers into `out`, newest first (pending ones lead). */
export async function history(out: HTMLElement, avatarId: string, token?: string): Promise<void> {
  try {
    const page = await listOwnershipTransfers(avatarId, PAGE_SIZE, token);
    const next = page.nextPageToken;
    show(
      out,
      transferTable(page.transfers ?? []),
      next ? h("button", { type: "button", onclick: () => void history(out, avatarId, next) }, "Next page") : h("p", { class: "hint" }, "Last page."),
    );
  } catch (err) {
    show(out, failure(err));
  }
}

export function transfersPage(root: HTMLElement): void {
  const [avatarL, avatar] = field("Avatar id", "avatar-id", { value: params().get("avatar") ?? "", placeholder: "UUID" });
  const [fromL, from] = field("From (owner) membership", "from-membership", { placeholder: "UUID" });
  const [toL, to] = field("To membership", "to-membership", { placeholder: "UUID" });
  const [modeL, mode] = choice("Mode", "mode", ["TRANSFER_MODE_IMMEDIATE", "TRANSFER_MODE_REQUEST"]);
  const out = h("section", { id: "transfers" });
  const writeOut = h("div", { class: "write-out" });
  const load = () => history(out, avatar.value.trim());
  const start = () =>
    runWrite(
      writeOut,
      () => transferOwnership({ avatarId: avatar.value.trim(), fromMembershipId: from.value.trim(), toMembershipId: to.value.trim(), mode: mode.value }),
      () => load(),
    );
  show(
    root,
    h("h2", {}, "Ownership transfers"),
    h("p", { class: "hint" }, `An avatar's transfer history, newest first, ${PAGE_SIZE} a page.`),
    h("form", { id: "transfers-form", onsubmit: (e: Event) => submit(e, load) }, avatarL, h("button", { type: "submit" }, "Show transfers")),
    h(
      "fieldset",
      { class: "write-form" },
      h("legend", {}, "Start a transfer (admin scope)"),
      fromL,
      toL,
      modeL,
      writeButton("Start transfer", "transfer", () => void start()),
    ),
    writeOut,
    out,
  );
  if (avatar.value) void load();
}
