// authz serve: run the server in this process (same as npm start).
import type { CliIo, Command } from "./common.js";

export const command: Command = {
  usage: "usage: authz serve\n\nRuns the server until SIGTERM or SIGINT; configuration from the environment (README).",
  async run(_args: string[], io: CliIo): Promise<number> {
    const { runServer } = await import("../main.js");
    await runServer(io.env as NodeJS.ProcessEnv);
    return -1; // keeps running; the server exits the process itself
  },
};
