// The console's only way to the server: Connect unary calls with JSON bodies
// (POST /authz.v1.<Service>/<Method>), authenticated with the API key typed
// into the sign-in form. The key lives in this module's memory only: never in
// the URL, storage or a cookie, so a reload signs the operator out.

let apiKey: string | undefined;
let served: ReadonlySet<string> = new Set();

/** An empty key sends no credential (a server with AUTHZ_AUTH=off). */
export function signIn(key: string): void {
  apiKey = key.trim();
}

export function signOut(): void {
  apiKey = undefined;
}

export function signedIn(): boolean {
  return apiKey !== undefined;
}

/** An error the server answered with: its Connect code (e.g. "permission_denied") and message. */
export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly reason: string | undefined,
  ) {
    super(message);
  }
}

/** The RPC paths the server binds (GET /console/methods.json); pages whose RPCs are absent stay hidden. */
export async function loadMethods(): Promise<void> {
  const res = await fetch("methods.json", { headers: { accept: "application/json" } });
  if (!res.ok) throw new ApiError("unavailable", `the console's method list answered HTTP ${res.status}`, undefined);
  served = new Set(((await res.json()) as { methods: string[] }).methods);
}

export function has(path: string): boolean {
  return served.has(path);
}

/** The google.rpc.ErrorInfo reason, when the server sent one with a debug copy; else undefined. */
function reasonOf(details: unknown): string | undefined {
  if (!Array.isArray(details)) return undefined;
  for (const d of details as Array<{ type?: string; debug?: { reason?: string } }>) {
    if (d.type === "google.rpc.ErrorInfo" && d.debug?.reason) return d.debug.reason;
  }
  return undefined;
}

/** One unary call: `path` like "/authz.v1.PermissionService/Check", `body` the request in proto3 JSON. */
export async function call<T>(path: string, body: unknown): Promise<T> {
  if (apiKey === undefined) throw new ApiError("unauthenticated", "sign in with an API key first", undefined);
  let res: Response;
  try {
    res = await fetch(`..${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", "connect-protocol-version": "1", ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}) },
      body: JSON.stringify(body),
    });
  } catch {
    throw new ApiError("unavailable", "the server could not be reached", undefined);
  }
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = text ? (JSON.parse(text) as Record<string, unknown>) : {};
  } catch {
    throw new ApiError("unknown", `HTTP ${res.status} with a body that is not JSON`, undefined);
  }
  if (!res.ok) {
    const code = typeof json.code === "string" ? json.code : `http_${res.status}`;
    throw new ApiError(code, typeof json.message === "string" ? json.message : `HTTP ${res.status}`, reasonOf(json.details));
  }
  return json as T;
}
