import { rmSync, statSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { StringDecoder } from 'node:string_decoder';
import { errorMessage } from '../domain/errors.js';
import type { Logger } from '../domain/log.js';

/** Where router lines go: the agent's callback shape; `berth up` appends to the app's log stream. */
export type AppLog = (appId: string, source: string, dyno: string, message: string) => void;

/**
 * nginx's access log line: the AccessEntry fields in order, tab-separated. escape=json escapes
 * tabs, quotes and control characters in what the client sent, so a tab always separates fields,
 * and splitting is all the parsing a line needs — at 25,000 requests a second, a JSON.parse per
 * line cost the router a tenth of its throughput. Timings are nginx's: seconds with millisecond
 * resolution, one per upstream try, "-" for none.
 */
const FIELDS = ['$berth_app_id', '$request_method', '$request_uri', '$host', '$berth_request_id', '$proxy_add_x_forwarded_for', '$berth_dyno', '$status', '$upstream_status', '$upstream_connect_time', '$upstream_header_time', '$upstream_response_time', '$bytes_sent', '$scheme', '$berth_error'];
export const LOG_FORMAT = `escape=json '${FIELDS.join('\t')}'`;

/** A field nginx escaped for JSON, back to what the client sent (most need nothing). */
const unescape = (v: string): string => {
  if (!v.includes('\\')) return v;
  try {
    return JSON.parse(`"${v}"`) as string;
  } catch {
    return v;
  }
};

/** One access log line as an entry, or undefined if it is not one of ours. */
export function parseAccessLine(line: string): AccessEntry | undefined {
  const f = line.split('\t');
  if (f.length !== FIELDS.length || !f[0]) return undefined;
  const [app = '', method = '', path = '', host = '', request_id = '', fwd = '', dyno = '', status = '', upstream_status = '', connect = '', header = '', response = '', bytes = '', protocol = '', code = ''] = f;
  return { app, method, path: unescape(path), host: unescape(host), request_id, fwd: unescape(fwd), dyno, status, upstream_status, connect, header, response, bytes, protocol, ...(code ? { code } : {}) };
}

export interface AccessEntry {
  app: string;
  method: string;
  path: string;
  host: string;
  request_id: string;
  fwd: string;
  dyno: string;
  status: string;
  upstream_status: string;
  connect: string;
  header: string;
  response: string;
  bytes: string;
  protocol: string;
  /** The router's own code for an answer it gave without a dyno (`H80`: maintenance mode). */
  code?: string;
}

/** nginx lists one value per upstream try ("0.001, 0.002", or " : " across internal redirects). */
const tries = (v: string): string[] => (v.includes(',') || v.includes(':') ? v.split(/\s*[,:]\s*/).filter((x) => x !== '') : v === '' ? [] : [v]);
const last = (v: string): string | undefined => (v.includes(',') || v.includes(':') ? tries(v).at(-1) : v === '' ? undefined : v);
const seconds = (v: string | undefined): number | undefined => {
  if (v === undefined || v === '' || v === '-') return undefined;
  const n = +v;
  return Number.isNaN(n) ? undefined : n;
};
const ms = (s: number | undefined): string => (s === undefined ? '' : `${Math.round(s * 1000)}ms`);
/** A quote, a backslash or a control character: what JSON.stringify would escape. */
function needsEscape(v: string): boolean {
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c || c === 0x7f) return true;
  }
  return false;
}
/** Heroku quotes path and fwd; a quote or space in them must not break the key=value line. */
const quoted = (v: string): string => (needsEscape(v) ? JSON.stringify(v) : `"${v}"`);
const bare = (v: string): string => (/^[^\s"]*$/.test(v) ? v : JSON.stringify(v));

/** Heroku's router error for a request nginx answered itself, if it was an error. */
function herokuError(e: AccessEntry): { code: string; desc: string; level: 'error' | 'info' } | undefined {
  const status = Number(e.status);
  const upstream = last(e.upstream_status);
  const connected = seconds(last(e.connect)) !== undefined;
  const answered = seconds(last(e.header)) !== undefined;
  // Heroku logs maintenance mode at info: it is the owner's choice, not a failure.
  if (e.code === 'H80' && status === 503) return { code: 'H80', desc: 'Maintenance mode', level: 'info' };
  if (status === 499) return { code: 'H27', desc: 'Client Request Interrupted', level: 'info' };
  if (!upstream || upstream === '-') return status === 503 && e.dyno === '' ? { code: 'H14', desc: 'No web processes running', level: 'error' } : undefined;
  if (answered) return undefined;
  if (upstream === '504') return connected ? { code: 'H12', desc: 'Request timeout', level: 'error' } : { code: 'H19', desc: 'Backend connection timeout', level: 'error' };
  if (upstream === '502') return connected ? { code: 'H13', desc: 'Connection closed without response', level: 'error' } : { code: 'H10', desc: 'App crashed', level: 'error' };
  return undefined;
}

/** `at=info method=GET path="/" host=… request_id=… fwd="…" dyno=web.1 connect=0ms service=3ms status=200 bytes=…` */
export function routerLogLine(e: AccessEntry): string {
  // One template, no intermediate arrays: this runs once per request the router serves.
  const err = herokuError(e);
  const connect = seconds(last(e.connect));
  let service: number | undefined;
  if (e.dyno) {
    const total = tries(e.response);
    if (total.length) service = Math.max(0, total.reduce((a, v) => a + (seconds(v) ?? 0), 0) - (connect ?? 0));
  }
  const head = err ? `at=${err.level} code=${err.code} desc=${quoted(err.desc)}` : 'at=info';
  return `${head} method=${bare(e.method)} path=${quoted(e.path)} host=${bare(e.host)} request_id=${bare(e.request_id)} fwd=${quoted(e.fwd)} dyno=${e.dyno} connect=${e.dyno ? ms(connect) : ''} service=${ms(service)} status=${e.status} bytes=${e.bytes} protocol=${e.protocol}`;
}

/**
 * Follows nginx's access log file and hands each request to the app's log stream. nginx writes it
 * buffered (`buffer=64k flush=200ms`): a write per buffer rather than a syscall (and a wake-up of
 * this process) per request, which is what made per-request syslog cost a fifth of the router's
 * throughput. The file lives in an owner-only directory, so dynos can neither read other apps'
 * requests nor forge lines. It is truncated in place once read past `rotateBytes`: nginx appends
 * (O_APPEND), so its next write lands at the start; a buffer written between the last read and the
 * truncation is lost, which costs log lines, never requests.
 */
export class RouterLogTail {
  private fd: FileHandle | undefined;
  private offset = 0;
  private decoder = new StringDecoder('utf8');
  private partial = '';
  private timer: NodeJS.Timeout | undefined;
  private reading: Promise<void> = Promise.resolve();

  constructor(
    private readonly o: { file: string; appLog: AppLog; log: Logger; pollMs?: number; rotateBytes?: number },
  ) {}

  /** Starts from an empty file: lines of a previous run were delivered then, or are stale now. */
  start(): void {
    rmSync(this.o.file, { force: true });
    this.timer = setInterval(() => void this.poll(), this.o.pollMs ?? 200);
  }

  /** Reads what nginx has written since the last poll (one read at a time). */
  poll(): Promise<void> {
    this.reading = this.reading.then(() => this.readNew()).catch((err: unknown) => this.o.log.warn({ err: errorMessage(err) }, 'router log not read'));
    return this.reading;
  }

  private async readNew(): Promise<void> {
    await this.follow();
    const fd = this.fd;
    if (!fd) return;
    const { size } = await fd.stat();
    if (size < this.offset) this.reset();
    // 64 KB (a few hundred lines) at a time, yielding in between: under load a poll finds
    // thousands of lines, and this process also serves the API.
    const chunk = Buffer.allocUnsafe(64 * 1024);
    while (this.offset < size) {
      const { bytesRead } = await fd.read(chunk, 0, Math.min(chunk.length, size - this.offset), this.offset);
      if (bytesRead === 0) break;
      this.offset += bytesRead;
      const lines = (this.partial + this.decoder.write(chunk.subarray(0, bytesRead))).split('\n');
      this.partial = lines.pop() ?? '';
      for (const line of lines) this.deliver(line);
      await new Promise((r) => setImmediate(r));
    }
    if (this.offset >= (this.o.rotateBytes ?? 16 * 1024 * 1024) && this.partial === '') {
      await fd.truncate(0);
      this.reset();
    }
  }

  /** Opens the file once nginx has made it, and again if it was replaced. */
  private async follow(): Promise<void> {
    let ino: number;
    try {
      ino = statSync(this.o.file).ino;
    } catch {
      return;
    }
    if (this.fd && (await this.fd.stat()).ino === ino) return;
    await this.fd?.close();
    this.fd = await open(this.o.file, 'r+');
    this.reset();
  }

  private reset(): void {
    this.offset = 0;
    this.partial = '';
    this.decoder = new StringDecoder('utf8');
  }

  private deliver(line: string): void {
    const entry = parseAccessLine(line);
    if (!entry) return;
    try {
      this.o.appLog(entry.app, 'berth', 'router', routerLogLine(entry));
    } catch (err) {
      this.o.log.warn({ err: errorMessage(err) }, 'router log line not delivered');
    }
  }

  /** Delivers what is left (nginx flushes its buffers when it stops), then lets go of the file. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.poll();
    await this.fd?.close().catch(() => undefined);
    this.fd = undefined;
  }
}
