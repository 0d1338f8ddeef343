import { z } from 'zod';
import type { StoredLine } from '../services/log-store.js';
import { LINE_ID, LINE_ID_SOURCE } from './ids.js';

/**
 * What servers send each other about log lines: `POST /internal/log-lines` (a batch fanned out by
 * the line's origin) and `GET /internal/log-lines?app=…` (an app's newest lines, for a server
 * catching up). One shape, checked on both ends: the routes by JSON schema, answers by zod.
 */
export interface WireLine {
  id: string;
  app_id: string;
  time: string;
  source: string;
  dyno: string;
  message: string;
}

export interface WireBatch {
  lines: WireLine[];
  /** Apps destroyed on the sender: their lines go here too. */
  forget?: string[];
}

const UUID = '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';
const SOURCE = '^[a-z]{1,16}$';
const DYNO = '^[A-Za-z0-9._-]{1,64}$';
/** Code points (JSON schema counts them so); the hub cuts longer messages where they enter. */
export const MAX_MESSAGE = 65_536;
const MAX_TIME = 40;
/** The receiving route's body limit: the sender keeps its batches well under it (`BATCH_BYTES`). */
export const BODY_LIMIT = 1024 * 1024;
export const BATCH_BYTES = 512 * 1024;
export const MAX_BATCH_LINES = 2000;
/** A catch-up answer's page: the newest lines up to this many, or up to this many bytes. */
export const PAGE_LINES = 500;
export const PAGE_BYTES = 2 * 1024 * 1024;

const line = {
  type: 'object',
  required: ['id', 'app_id', 'time', 'source', 'dyno', 'message'],
  additionalProperties: false,
  properties: {
    id: { type: 'string', pattern: LINE_ID_SOURCE },
    app_id: { type: 'string', pattern: UUID },
    time: { type: 'string', minLength: 1, maxLength: MAX_TIME },
    source: { type: 'string', pattern: SOURCE },
    dyno: { type: 'string', pattern: DYNO },
    message: { type: 'string', maxLength: MAX_MESSAGE },
  },
} as const;

export const batchSchema = {
  type: 'object',
  required: ['lines'],
  additionalProperties: false,
  properties: {
    lines: { type: 'array', maxItems: 5000, items: line },
    forget: { type: 'array', maxItems: 1000, items: { type: 'string', pattern: UUID } },
  },
} as const;

export const pageQuerySchema = {
  type: 'object',
  required: ['app'],
  additionalProperties: false,
  properties: {
    app: { type: 'string', pattern: UUID },
    before: { type: 'string', pattern: LINE_ID_SOURCE },
  },
} as const;

const UUID_RE = new RegExp(UUID);
const SOURCE_RE = new RegExp(SOURCE);
const DYNO_RE = new RegExp(DYNO);

/** Whether a line may travel as is: a peer refuses a whole batch over one bad line. */
export function travels(appId: string, l: StoredLine): boolean {
  return UUID_RE.test(appId) && SOURCE_RE.test(l.source) && DYNO_RE.test(l.dyno) && l.time.length > 0 && l.time.length <= MAX_TIME && l.message.length <= MAX_MESSAGE;
}

export function toWire(appId: string, l: StoredLine): WireLine {
  return { id: l.id, app_id: appId, time: l.time, source: l.source, dyno: l.dyno, message: l.message };
}

const storedLine = z.object({
  id: z.string().regex(LINE_ID),
  time: z.string().min(1).max(MAX_TIME),
  source: z.string().regex(SOURCE_RE),
  dyno: z.string().regex(DYNO_RE),
  message: z.string().max(MAX_MESSAGE * 2),
});

/** A catch-up page as another server answers it: the lines oldest first, and whether older ones remain. */
export const pageAnswer = z.object({ lines: z.array(storedLine).max(PAGE_LINES), more: z.boolean() });
export type PageAnswer = z.infer<typeof pageAnswer>;
