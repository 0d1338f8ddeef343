import { invalid } from '../domain/errors.js';

/** `--network-name`: it prefixes kernel object names, which allow at most 15 characters. */
export function networkName(name: string): string {
  if (!/^[a-z][a-z0-9]{0,5}$/.test(name)) throw invalid(`--network-name must be 1-6 lowercase letters and digits, starting with a letter, got "${name}".`);
  return name;
}
