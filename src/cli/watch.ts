// authz watch: follow the change log as it grows. Waits for the Watch RPC;
// its change replaces this (RemoteClient.stream is ready for it).
import { pending } from "./common.js";

export const command = pending("watch", "Watch");
