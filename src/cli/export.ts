// authz export: write the data as an import document. Waits for the Export
// RPC; its change replaces this.
import { pending } from "./common.js";

export const command = pending("export", "Export");
