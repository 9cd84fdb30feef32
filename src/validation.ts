// Input forms shared by every entry point.

/** A UUID in canonical text form (any case; callers lower-case it). */
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A revision token as authz hands them out: a decimal bigint. */
export const REVISION = /^\d{1,19}$/;
