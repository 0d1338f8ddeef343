import { invalid } from '../domain/errors.js';

const TYPE = /^[A-Za-z0-9_-]+$/;

/**
 * Parses a Procfile as Heroku does: one `type: command` per line, split at the first colon, types
 * of letters, digits, `_` and `-`; blank lines and `#` comments ignored. A repeated type or a line
 * that is not `type: command` is an error naming the line.
 */
export function parseProcfile(text: string): Record<string, string> {
  const types: Record<string, string> = {};
  const seen = new Map<string, number>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    const n = i + 1;
    if (line === '' || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    if (colon <= 0) throw invalid(`Procfile line ${n}: expected "type: command", got "${line}".`);
    const type = line.slice(0, colon).trim();
    const command = line.slice(colon + 1).trim();
    if (!TYPE.test(type)) throw invalid(`Procfile line ${n}: process type "${type}" may only contain letters, digits, _ and -.`);
    if (command === '') throw invalid(`Procfile line ${n}: process type ${type} has no command.`);
    const first = seen.get(type);
    if (first !== undefined) throw invalid(`Procfile line ${n}: process type ${type} is already defined on line ${first}.`);
    seen.set(type, n);
    types[type] = command;
  });
  return types;
}
