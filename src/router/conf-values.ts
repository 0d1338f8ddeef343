import { isAbsolute, relative, resolve } from 'node:path';

/**
 * What may reach nginx.conf (and the control server's line protocol) from the store. The API
 * validates on write, but the store is written by more than the API (other machines, a hand edit,
 * an older version), so every value is checked again here, where it becomes nginx syntax: a value
 * that could end its token — whitespace, `;`, braces, quotes, `$` (a variable in most directives),
 * `#`, a backslash, a control character — never gets there. Each check is a whole-value pattern,
 * not an escape: a name that needs escaping is not a name Berth ever writes.
 */

/** App names as the controller makes them (names.ts), a little wider so an older rule still fits. */
const APP_NAME = /^[a-z][a-z0-9-]{0,62}$/;
/** App ids are UUIDs; certificate ids too. Hex, letters and dashes only. */
const ID = /^[A-Za-z0-9-]{1,64}$/;
/** A DNS name (lowercase, as the controller stores it), optionally one leading wildcard label. */
const HOSTNAME = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
/** A setting's value as nginx takes it: a size, a time, a number. */
const SETTING = /^[A-Za-z0-9.]{1,32}$/;
/** A file path written inside double quotes: no quote, backslash, `$`, whitespace or control character. */
const PATH = /^\/[A-Za-z0-9._/+@:-]*$/;

export const isSafeAppName = (v: string): boolean => APP_NAME.test(v);
export const isSafeId = (v: string): boolean => ID.test(v);
export const isSafeHostname = (v: string): boolean => v.length <= 253 && HOSTNAME.test(v);
export const isSafeSetting = (v: string): boolean => SETTING.test(v);
export const isSafePath = (v: string): boolean => PATH.test(v) && !v.split('/').includes('..');

/** `name` under `dir`, or undefined if the name is not one plain file name (no separator, no `..`). */
export function fileUnder(dir: string, name: string): string | undefined {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name) || name.includes('..')) return undefined;
  const path = resolve(dir, name);
  const rel = relative(resolve(dir), path);
  return rel === name && !isAbsolute(rel) && isSafePath(path) ? path : undefined;
}

/**
 * The template's last line of defence: a value the plan should already have left out throws
 * here, so the render fails and nginx keeps its current config rather than loading an injected one.
 */
export function token(v: unknown, check: (v: string) => boolean, what: string): string {
  const s = String(v);
  if (!check(s)) throw new Error(`refusing to render ${what} ${JSON.stringify(s).slice(0, 80)} into nginx.conf`);
  return s;
}

/** The checks the template applies to every store value it writes (`it.router.safe`). */
export const renderChecks = {
  host: (v: string): string => token(v, isSafeHostname, 'hostname'),
  name: (v: string): string => token(v, isSafeAppName, 'app name'),
  id: (v: string): string => token(v, isSafeId, 'id'),
  path: (v: string): string => token(v, isSafePath, 'path'),
  setting: (v: string): string => token(v, isSafeSetting, 'setting'),
};
