// Input forms shared by every entry point, and the validators every writer
// uses for them: one UUID form, one revision form, one key form, one
// idempotency-key rule, one text rule, one page-size rule.

import { invalidArgument } from "./errors.js";

/** A UUID in canonical text form (any case; callers lower-case it). */
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A revision token as authz hands them out: a decimal bigint. */
export const REVISION = /^\d{1,19}$/;

/** Role, permission and policy keys. */
export const KEY = /^[A-Za-z0-9._:-]{1,128}$/;

export const MAX_IDEMPOTENCY_KEY_BYTES = 128;
/** Names (role names, display names). */
export const MAX_NAME_BYTES = 256;
/** Descriptions and other free text. */
export const MAX_TEXT_BYTES = 4096;

/** The most records one page of any listing holds. */
export const MAX_PAGE_SIZE = 1000;

/** A listing's page_size: 0 (the listing's default) to MAX_PAGE_SIZE; INVALID_ARGUMENT otherwise. */
export function pageSize(n: number, defaultSize: number): number {
  if (!Number.isInteger(n) || n < 0 || n > MAX_PAGE_SIZE) {
    throw invalidArgument(`page_size must be 0 (the default, ${defaultSize}) to ${MAX_PAGE_SIZE}`, "page_size");
  }
  return n === 0 ? defaultSize : n;
}

/** A canonical, lower-cased UUID; INVALID_ARGUMENT naming `field` otherwise. */
export function uuid(v: unknown, field: string): string {
  if (typeof v !== "string" || !UUID.test(v)) throw invalidArgument(`${field} must be a UUID in canonical text form`, field);
  return v.toLowerCase();
}

/** A UUID, or null for null/undefined/"" (e.g. a global role's organization). */
export function optionalUuid(v: unknown, field: string): string | null {
  return v === null || v === undefined || v === "" ? null : uuid(v, field);
}

export function key(v: unknown, field: string): string {
  if (typeof v !== "string" || !KEY.test(v)) {
    throw invalidArgument(`${field} must be 1 to 128 characters of letters, digits and "._:-"`, field);
  }
  return v;
}

/**
 * Free text of at most `maxBytes` UTF-8 bytes, without NUL (Postgres text
 * cannot hold U+0000). undefined stays undefined (an absent field).
 */
export function text(v: unknown, field: string, maxBytes: number = MAX_TEXT_BYTES): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "string") throw invalidArgument(`${field} must be a string`, field);
  if (Buffer.byteLength(v, "utf8") > maxBytes) throw invalidArgument(`${field} is longer than ${maxBytes} bytes`, field);
  if (v.includes("\u0000")) throw invalidArgument(`${field} must not contain NUL characters`, field);
  return v;
}

/** Control characters and the bidirectional formatting marks that reorder a line of text when it is shown. */
const UNPRINTABLE = /[\p{Cc}\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/u;

/**
 * A name shown to people (an API key's, in listings and `api-key list --output table`): text() and no control or
 * bidirectional formatting character, which could make one name display as another.
 */
export function plainName(v: unknown, field: string, maxBytes: number): string | undefined {
  const s = text(v, field, maxBytes);
  if (s !== undefined && UNPRINTABLE.test(s)) throw invalidArgument(`${field} must not contain control or bidirectional formatting characters`, field);
  return s;
}

/** An idempotency key: absent or "" = none; at most 128 bytes, no NUL. */
export function idempotencyKey(v: unknown): string | undefined {
  if (v === undefined || v === "") return undefined;
  if (typeof v !== "string" || Buffer.byteLength(v, "utf8") > MAX_IDEMPOTENCY_KEY_BYTES) {
    throw invalidArgument(`idempotency_key must be at most ${MAX_IDEMPOTENCY_KEY_BYTES} bytes`, "idempotency_key");
  }
  return text(v, "idempotency_key", MAX_IDEMPOTENCY_KEY_BYTES);
}

/** An expected_revision: absent or "" = none; else a revision returned by an earlier call, normalized. */
export function expectedRevision(v: unknown): string | undefined {
  if (v === undefined || v === "") return undefined;
  if (typeof v !== "string" || !REVISION.test(v)) {
    throw invalidArgument("expected_revision must be a revision (a decimal number) returned by an earlier call", "expected_revision");
  }
  return BigInt(v).toString();
}

/** `{ [k]: v }`, or nothing when v is undefined (keeps absent fields absent, not undefined). */
export function optional<K extends string, V>(k: K, v: V | undefined): { [P in K]?: V } {
  return (v === undefined ? {} : { [k]: v }) as { [P in K]?: V };
}
