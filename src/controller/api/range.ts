import type { FastifyReply, FastifyRequest } from 'fastify';
import { invalid } from '../../domain/errors.js';

/**
 * Heroku's list pagination: `Range: <field> [<start>]..[<end>][; max=<n>[, order=asc|desc]]`; a `]`
 * before the start makes it exclusive. A partial page answers 206 with `Next-Range` for the rest.
 */
export interface RangeSpec {
  field: string;
  start?: string;
  exclusive: boolean;
  max: number;
  order: 'asc' | 'desc';
}

const DEFAULT_MAX = 200;
const MAX_MAX = 1000;

export function parseRange(header: string | undefined, fields: string[], defaultField: string): RangeSpec {
  const spec: RangeSpec = { field: defaultField, exclusive: false, max: DEFAULT_MAX, order: 'asc' };
  if (!header) return spec;
  // The start may hold dots (hostnames, emails, timestamps, web.1): it runs to the first "..".
  const m = /^\s*([a-z_]+)\s*(\]?)(.*?)\.\.([^;]*)(?:;\s*(.*))?$/i.exec(header);
  if (!m) throw invalid(`Invalid Range header "${header}": expected "<field> [start]..[end]; max=N, order=asc|desc".`);
  const [, field = defaultField, bracket, start, , params] = m;
  if (!fields.includes(field)) throw invalid(`Range field must be one of ${fields.join(', ')}, got ${field}.`);
  spec.field = field;
  spec.exclusive = bracket === ']';
  if (start && start.trim()) spec.start = start.trim();
  // Clients differ: "max=15, order=desc", "order=desc,max=1", "max=1000;" — read them all.
  for (const p of (params ?? '').split(/[,;]/)) {
    const [k, v] = p.split('=').map((s) => s.trim());
    if (k === 'max' && v) {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw invalid(`Range max must be a positive integer, got ${v}.`);
      spec.max = Math.min(n, MAX_MAX);
    } else if (k === 'order' && (v === 'asc' || v === 'desc')) spec.order = v;
  }
  return spec;
}

/** Byte order for strings (as a client paging by name expects), numeric for numbers. */
function compareValues(a: unknown, b: unknown): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return Buffer.compare(Buffer.from(String(a)), Buffer.from(String(b)));
}

/** Sorts, pages and sends a list resource. `fields` maps a Range field name to an item's value. */
export function sendPage<T>(
  request: FastifyRequest,
  reply: FastifyReply,
  items: T[],
  fields: Record<string, (item: T) => string | number>,
  defaultField: string,
): FastifyReply {
  const spec = parseRange(request.headers.range, Object.keys(fields), defaultField);
  const get = fields[spec.field] ?? ((): string => '');
  const sorted = [...items].sort((a, b) => compareValues(get(a), get(b)) * (spec.order === 'desc' ? -1 : 1));
  let from = 0;
  if (spec.start !== undefined && sorted.length > 0) {
    const start = typeof get(sorted[0] as T) === 'number' ? Number(spec.start) : spec.start;
    const dir = spec.order === 'desc' ? -1 : 1;
    from = sorted.findIndex((item) => {
      const c = compareValues(get(item), start) * dir;
      return spec.exclusive ? c > 0 : c >= 0;
    });
    if (from < 0) from = sorted.length;
  }
  const page = sorted.slice(from, from + spec.max);
  const last = page[page.length - 1];
  if (from + spec.max < sorted.length && last !== undefined) {
    reply.header('Next-Range', `${spec.field} ]${get(last)}..; max=${spec.max}${spec.order === 'desc' ? ', order=desc' : ''}`);
    reply.code(206);
  } else if (request.headers.range) {
    reply.header('Accept-Ranges', Object.keys(fields).join(', '));
  }
  return reply.send(page);
}
