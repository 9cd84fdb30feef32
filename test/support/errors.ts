import { expect } from "vitest";
import { AuthzError } from "../../src/errors.js";

/** The AuthzError a call is refused with (the test fails when it succeeds or fails otherwise). */
export async function refusal(p: Promise<unknown>): Promise<AuthzError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AuthzError);
  return err as AuthzError;
}
