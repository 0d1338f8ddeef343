import { readFileSync, readdirSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { invalid } from '../domain/errors.js';

/**
 * A template resource, confd's unit of work: render `src` with the store's values under `keys`
 * into `dest`, check the staged file with `check_cmd`, move it into place, run `reload_cmd`.
 * Defined in `<config>/conf.d/*.yaml`; templates live in `<config>/templates/`.
 */
export interface TemplateResource {
  name: string;
  /** Absolute path of the template (Eta syntax). */
  src: string;
  dest: string;
  /** Store keys or prefixes the output depends on; a change under any re-renders it. */
  keys: string[];
  mode: number;
  /** `uid:gid` to own the file, or undefined to keep the writer's. */
  owner?: { uid: number; gid: number };
  /** Run against the staged file (`{{src}}` is its path); non-zero keeps the old file. */
  checkCmd?: string;
  reloadCmd?: string;
}

interface RawResource {
  src?: unknown;
  dest?: unknown;
  keys?: unknown;
  mode?: unknown;
  owner?: unknown;
  check_cmd?: unknown;
  reload_cmd?: unknown;
}

function str(v: unknown, field: string, file: string): string {
  if (typeof v !== 'string' || v.trim() === '') throw invalid(`${file}: "${field}" must be a non-empty string.`);
  return v;
}

export function parseResource(name: string, text: string, configDir: string): TemplateResource {
  const file = `conf.d/${name}`;
  let raw: RawResource;
  try {
    raw = (parseYaml(text) ?? {}) as RawResource;
  } catch (err) {
    throw invalid(`${file} is not valid YAML: ${(err as Error).message}`);
  }
  const src = str(raw.src, 'src', file);
  const dest = str(raw.dest, 'dest', file);
  if (!isAbsolute(dest)) throw invalid(`${file}: "dest" must be an absolute path.`);
  if (!Array.isArray(raw.keys) || raw.keys.length === 0 || !raw.keys.every((k) => typeof k === 'string' && k.startsWith('/'))) {
    throw invalid(`${file}: "keys" must list store keys or prefixes, each starting with "/".`);
  }
  const modeText = raw.mode === undefined ? '0644' : String(raw.mode);
  if (!/^0?[0-7]{3}$/.test(modeText)) throw invalid(`${file}: "mode" must be octal like "0644", got ${modeText}.`);
  let owner: TemplateResource['owner'];
  if (raw.owner !== undefined) {
    const m = /^(\d+):(\d+)$/.exec(String(raw.owner));
    if (!m) throw invalid(`${file}: "owner" must be "uid:gid" in numbers.`);
    owner = { uid: Number(m[1]), gid: Number(m[2]) };
  }
  return {
    name,
    src: isAbsolute(src) ? src : resolve(configDir, 'templates', src),
    dest,
    keys: raw.keys as string[],
    mode: parseInt(modeText, 8),
    ...(owner ? { owner } : {}),
    ...(raw.check_cmd !== undefined ? { checkCmd: str(raw.check_cmd, 'check_cmd', file) } : {}),
    ...(raw.reload_cmd !== undefined ? { reloadCmd: str(raw.reload_cmd, 'reload_cmd', file) } : {}),
  };
}

/** Every `conf.d/*.yaml` under a templater config dir, in name order. */
export function loadResources(configDir: string): TemplateResource[] {
  const dir = join(configDir, 'conf.d');
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => /\.ya?ml$/.test(n)).sort();
  } catch {
    throw invalid(`No template resources: ${dir} does not exist.`);
  }
  if (names.length === 0) throw invalid(`No template resources in ${dir} (*.yaml).`);
  return names.map((n) => parseResource(n, readFileSync(join(dir, n), 'utf8'), configDir));
}
