// Runs a command's calls against the server and turns every failure into the
// documented exit code with one line on stderr that names the gRPC code and
// the API's reason.
import { connect, type RemoteClient, RemoteError, RequestShapeError } from "../rpc/client.js";
import { type CliIo, EXIT, type Remote } from "./common.js";

const UNAVAILABLE_CODES = new Set(["UNAVAILABLE", "DEADLINE_EXCEEDED"]);

export function exitCodeOf(err: RemoteError): number {
  if (UNAVAILABLE_CODES.has(err.code)) return EXIT.UNAVAILABLE;
  if (err.code === "INVALID_ARGUMENT") return EXIT.USAGE;
  return EXIT.DENIED;
}

/** Connects, runs fn, and maps a refused or failed call to its exit code. */
export async function withServer(command: string, remote: Remote, io: CliIo, fn: (client: RemoteClient) => Promise<number>): Promise<number> {
  const client = connect({ server: remote.server, credential: remote.credential, timeoutMs: remote.timeoutMs });
  try {
    return await fn(client);
  } catch (err) {
    if (err instanceof RequestShapeError) {
      io.err(`authz ${command}: ${err.message}\n`);
      return EXIT.USAGE;
    }
    if (!(err instanceof RemoteError)) throw err;
    const reason = err.reason && err.reason !== err.code ? ` (${err.reason})` : "";
    const hint = err.code === "UNAVAILABLE" && !err.reason ? ` [server ${remote.server}; is it running? --server or AUTHZ_SERVER choose another]` : "";
    io.err(`authz ${command}: ${err.code}${reason}: ${err.message}${hint}\n`);
    return exitCodeOf(err);
  }
}
