// Path templates ("/orgs/{org}/billing") and value templates
// ("organization:{org}", "{header:x-org-id}", "key:login:{subject.id}") of the
// mesh mapping. Pure: strings in, strings out.

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A template or a piece of one inside an error message: templates can come from a request (context_extensions). */
const q = (s: string): string => (s.length > 80 ? `${s.slice(0, 80)}…` : s);
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;

/** One segment of a path template. */
type Segment = { kind: "literal"; text: string } | { kind: "var"; name: string } | { kind: "any" } | { kind: "rest" };

export interface PathTemplate {
  readonly source: string;
  readonly segments: readonly Segment[];
  /** Names of the {variables} it captures. */
  readonly vars: ReadonlySet<string>;
}

/** A path without its query string and trailing slash, split into segments. */
function segmentsOf(path: string): string[] {
  let p = path;
  const q = p.search(/[?#]/);
  if (q >= 0) p = p.slice(0, q);
  if (p.length > 1 && p.endsWith("/")) p = p.slice(0, -1);
  return p.split("/").slice(1);
}

/**
 * Compiles "/orgs/{org}/billing": a literal segment matches itself, "{name}"
 * one non-empty segment (captured, percent-decoded), "*" any one segment, and
 * "**" (last only) the rest of the path, possibly empty. Throws on a bad template.
 */
export function compilePath(source: string): PathTemplate {
  if (!source.startsWith("/")) throw new Error(`path template "${q(source)}" must start with "/"`);
  const raw = segmentsOf(source);
  const vars = new Set<string>();
  const segments = raw.map((s, i): Segment => {
    if (s === "**") {
      if (i !== raw.length - 1) throw new Error(`path template "${q(source)}": "**" may only be the last segment`);
      return { kind: "rest" };
    }
    if (s === "*") return { kind: "any" };
    const m = /^\{([^{}]+)\}$/.exec(s);
    if (m) {
      const name = m[1] as string;
      if (!NAME.test(name) || name === "subject") throw new Error(`path template "${q(source)}": "{${q(name)}}" is not a usable variable name`);
      if (vars.has(name)) throw new Error(`path template "${q(source)}": "{${q(name)}}" appears twice`);
      vars.add(name);
      return { kind: "var", name };
    }
    if (/[{}]/.test(s)) throw new Error(`path template "${q(source)}": a variable must be a whole segment, got "${q(s)}"`);
    return { kind: "literal", text: s };
  });
  return { source, segments, vars };
}

const decode = (s: string): string => {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
};

/** The captured variables when `path` (query string allowed) matches, else undefined. */
export function matchPath(t: PathTemplate, path: string): Record<string, string> | undefined {
  const parts = segmentsOf(path);
  const out: Record<string, string> = {};
  for (let i = 0; i < t.segments.length; i++) {
    const seg = t.segments[i] as Segment;
    if (seg.kind === "rest") return out;
    const part = parts[i];
    if (part === undefined) return undefined;
    if (seg.kind === "literal") {
      if (part !== seg.text) return undefined;
    } else if (seg.kind === "var") {
      if (part === "") return undefined;
      out[seg.name] = decode(part);
    } else if (part === "") {
      return undefined;
    }
  }
  return parts.length === t.segments.length ? out : undefined;
}

/** One piece of a value template. */
type Piece =
  | { kind: "text"; text: string }
  | { kind: "var"; name: string }
  | { kind: "header"; name: string }
  | { kind: "subject"; part: "whole" | "type" | "id" };

export interface ValueTemplate {
  readonly source: string;
  readonly pieces: readonly Piece[];
  /** Path variables it needs. */
  readonly vars: ReadonlySet<string>;
  /** Whether it refers to the resolved subject. */
  readonly usesSubject: boolean;
}

/**
 * Compiles a value template: text with placeholders "{name}" (a path
 * variable), "{header:<lower-case name>}" (a request header), "{subject}"
 * ("type:id" of the resolved subject), "{subject.type}" and "{subject.id}".
 * Throws on a bad template.
 */
export function compileValue(source: string): ValueTemplate {
  const pieces: Piece[] = [];
  const vars = new Set<string>();
  let usesSubject = false;
  const re = /\{([^{}]*)\}/g;
  let last = 0;
  for (let m = re.exec(source); m; m = re.exec(source)) {
    if (m.index > last) pieces.push({ kind: "text", text: source.slice(last, m.index) });
    last = m.index + m[0].length;
    const inner = m[1] as string;
    if (inner === "subject" || inner === "subject.type" || inner === "subject.id") {
      usesSubject = true;
      pieces.push({ kind: "subject", part: inner === "subject" ? "whole" : inner === "subject.type" ? "type" : "id" });
    } else if (inner.startsWith("header:")) {
      const name = inner.slice("header:".length).toLowerCase();
      if (!HEADER_NAME.test(name)) throw new Error(`template "${q(source)}": "{${q(inner)}}" does not name a header`);
      pieces.push({ kind: "header", name });
    } else if (NAME.test(inner)) {
      vars.add(inner);
      pieces.push({ kind: "var", name: inner });
    } else {
      throw new Error(`template "${q(source)}": "{${q(inner)}}" is not a path variable, {header:<name>}, {subject}, {subject.type} or {subject.id}`);
    }
  }
  const rest = source.slice(last);
  if (/[{}]/.test(rest)) throw new Error(`template "${q(source)}" has an unbalanced brace`);
  if (rest) pieces.push({ kind: "text", text: rest });
  return { source, pieces, vars, usesSubject };
}

/** What a value template reads from. */
export interface TemplateInput {
  vars: Readonly<Record<string, string>>;
  header(name: string): string | undefined;
  subject?: { type: string; id: string } | undefined;
}

export type Rendered =
  | { readonly ok: true; readonly value: string }
  /** `kind` says what is missing: a header (the request's fault) or a path variable / the subject (the mapping's). */
  | { readonly ok: false; readonly kind: "header" | "var" | "subject"; readonly missing: string };

/** The rendered value, or what is missing. */
export function renderValue(t: ValueTemplate, input: TemplateInput): Rendered {
  let out = "";
  for (const p of t.pieces) {
    switch (p.kind) {
      case "text":
        out += p.text;
        break;
      case "var": {
        const v = input.vars[p.name];
        if (v === undefined) return { ok: false, kind: "var", missing: `path variable {${p.name}}` };
        out += v;
        break;
      }
      case "header": {
        const v = input.header(p.name);
        if (v === undefined || v === "") return { ok: false, kind: "header", missing: `header ${p.name}` };
        out += v;
        break;
      }
      case "subject": {
        const s = input.subject;
        if (!s) return { ok: false, kind: "subject", missing: "the subject" };
        out += p.part === "whole" ? `${s.type}:${s.id}` : p.part === "type" ? s.type : s.id;
        break;
      }
    }
  }
  return { ok: true, value: out };
}

/** "type:id" split at the first colon; undefined when there is none or either side is empty. */
export function splitRef(value: string): { type: string; id: string } | undefined {
  const i = value.indexOf(":");
  if (i <= 0 || i === value.length - 1) return undefined;
  return { type: value.slice(0, i).trim(), id: value.slice(i + 1).trim() };
}
