import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { errorMessage } from '../../domain/errors.js';
import type { Logger } from '../../domain/log.js';

/** One line of an app's log stream, Heroku style: `<time> <source>[<dyno>]: <message>`. */
export interface LogLine {
  time: string;
  source: string;
  dyno: string;
  message: string;
}

/** A line as kept and passed between servers: `id` is given where it entered (`logs/ids.ts`). */
export interface StoredLine extends LogLine {
  id: string;
}

/** A line of some app, as batches carry them. */
export interface AppLine {
  app: string;
  line: StoredLine;
}

/**
 * Heroku's log filters: `source` is exact (`app`, `berth`); `dyno` is a dyno (`web.1`) or a process
 * type (`web`, `router`), a type matching every dyno of that type.
 */
export interface LogFilter {
  source?: string;
  dyno?: string;
}

export function matchesFilter(l: LogLine, f: LogFilter): boolean {
  return (!f.source || l.source === f.source) && (!f.dyno || l.dyno === f.dyno || l.dyno.startsWith(`${f.dyno}.`));
}

/**
 * Where an app's recent lines are kept, newest `retain` per app, in id order (time order across
 * servers), each id once.
 */
export interface LogStore {
  /** Must not block or throw: a chatty dyno calls it for every line. A line whose id is kept already is ignored. */
  append(appId: string, line: StoredLine): void;
  /**
   * Stores lines from elsewhere (another server) now, in one commit, skipping ids already kept;
   * returns those that were new, in the order given.
   */
  merge(batch: AppLine[]): AppLine[];
  /** The newest `n` lines matching `filter`, oldest first, in id order. */
  recent(appId: string, n: number, filter?: LogFilter): LogLine[];
  /** The newest `n` lines with ids below `before` (all if absent), oldest first, ids included. */
  page(appId: string, n: number, before?: string): StoredLine[];
  forget(appId: string): void;
  close(): void;
}

export interface SqliteLogStoreOptions {
  /** A file path (created 0600), or ':memory:'. */
  path: string;
  /** Lines kept per app (Heroku keeps 1,500). */
  retain?: number;
  /** Appends are committed together at most this often (ms). */
  flushMs?: number;
  log?: Logger;
}

// `id` is the row's insertion order, kept for the table's history; lines are ordered by `uid`,
// the line's own id, which every server's copy shares (dedup is the unique index).
const SCHEMA = `
CREATE TABLE IF NOT EXISTS lines (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  app TEXT NOT NULL,
  time TEXT NOT NULL,
  source TEXT NOT NULL,
  dyno TEXT NOT NULL,
  message TEXT NOT NULL
);
`;

/**
 * A database from before line ids: its rows get ids that sort before every new one ("00…", while
 * a clock id starts "01…") in their old order, with a random part of this database's own, so two
 * servers' old lines never pass for copies of each other.
 */
function migrate(db: Database.Database): void {
  const columns = db.prepare('PRAGMA table_info(lines)').all() as { name: string }[];
  if (!columns.some((c) => c.name === 'uid')) {
    db.transaction(() => {
      db.exec('ALTER TABLE lines ADD COLUMN uid TEXT');
      db.prepare("UPDATE lines SET uid = '00' || ? || printf('%016x', id)").run(randomBytes(4).toString('hex'));
    })();
  }
  db.exec('CREATE UNIQUE INDEX IF NOT EXISTS lines_app_uid ON lines (app, uid); DROP INDEX IF EXISTS lines_app;');
}

/** A flush this large goes now rather than on the timer, so pending lines stay bounded too. */
const MAX_PENDING = 2000;

/**
 * Lines in SQLite, so they outlive a restart. Appends are queued and committed in one transaction
 * per flush interval (with synchronous=NORMAL under WAL: no fsync per commit), so a dyno printing
 * thousands of lines a second costs a few commits, not thousands of fsyncs. Reads flush first, so a
 * reader always sees every line appended before it asked. Batches from other servers (`merge`) are
 * committed at once, one transaction each, since their caller must learn which lines were new.
 * Lines are logs, not state: a kill -9 may lose the last interval's lines, which the store's
 * durability rules do not cover (the other servers hold copies).
 */
export class SqliteLogStore implements LogStore {
  private readonly db: Database.Database;
  private readonly retain: number;
  private pending: AppLine[] = [];
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  private closed = false;
  private readonly insert: Database.Statement;
  private readonly trim: Database.Statement;
  /** One prepared statement per query shape (four filters, two pages). */
  private readonly queries = new Map<string, Database.Statement>();
  private readonly commit: (batch: AppLine[]) => AppLine[];

  constructor(private readonly options: SqliteLogStoreOptions) {
    this.retain = options.retain ?? 1500;
    if (options.path !== ':memory:') {
      mkdirSync(dirname(options.path), { recursive: true });
      // Owner-only from the first byte (dyno output can carry secrets); SQLite gives its -wal and
      // -shm files the database file's mode.
      if (!existsSync(options.path)) closeSync(openSync(options.path, 'a', 0o600));
      else if ((statSync(options.path).mode & 0o077) !== 0) chmodSync(options.path, 0o600);
    }
    this.db = new Database(options.path, { timeout: 5000 });
    if (options.path !== ':memory:') this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(SCHEMA);
    migrate(this.db);
    this.insert = this.db.prepare('INSERT OR IGNORE INTO lines (app, uid, time, source, dyno, message) VALUES (?, ?, ?, ?, ?, ?)');
    // Everything at or below the uid of the (retain+1)-th newest line goes; NULL (fewer lines) keeps all.
    this.trim = this.db.prepare('DELETE FROM lines WHERE app = ? AND uid <= (SELECT uid FROM lines WHERE app = ? ORDER BY uid DESC LIMIT 1 OFFSET ?)');
    this.commit = this.db.transaction((batch: AppLine[]) => {
      const apps = new Set<string>();
      const added: AppLine[] = [];
      for (const entry of batch) {
        const { app, line } = entry;
        if (this.insert.run(app, line.id, line.time, line.source, line.dyno, line.message).changes > 0) added.push(entry);
        apps.add(app);
      }
      for (const app of apps) this.trim.run(app, app, this.retain);
      return added;
    });
  }

  append(appId: string, line: StoredLine): void {
    if (this.closed) return;
    this.pending.push({ app: appId, line });
    if (this.pending.length >= MAX_PENDING) this.flush();
    else if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), this.options.flushMs ?? 50);
      this.timer.unref();
    }
  }

  recent(appId: string, n: number, filter: LogFilter = {}): LogLine[] {
    if (n <= 0 || this.closed) return [];
    this.flush();
    const where = ['app = ?'];
    const params: (string | number)[] = [appId];
    if (filter.source) {
      where.push('source = ?');
      params.push(filter.source);
    }
    if (filter.dyno) {
      // A prefix compare, not LIKE: dyno names may hold `_` or `%`.
      where.push('(dyno = ? OR substr(dyno, 1, ?) = ?)');
      params.push(filter.dyno, filter.dyno.length + 1, `${filter.dyno}.`);
    }
    return this.query(`SELECT time, source, dyno, message FROM (SELECT uid, time, source, dyno, message FROM lines WHERE ${where.join(' AND ')} ORDER BY uid DESC LIMIT ?) ORDER BY uid`).all(...params, n) as LogLine[];
  }

  merge(batch: AppLine[]): AppLine[] {
    if (this.closed || batch.length === 0) return [];
    return this.commit(batch);
  }

  page(appId: string, n: number, before?: string): StoredLine[] {
    if (n <= 0 || this.closed) return [];
    this.flush();
    const below = before === undefined ? '' : ' AND uid < ?';
    const params: (string | number)[] = before === undefined ? [appId, n] : [appId, before, n];
    return this.query(`SELECT uid AS id, time, source, dyno, message FROM (SELECT uid, time, source, dyno, message FROM lines WHERE app = ?${below} ORDER BY uid DESC LIMIT ?) ORDER BY uid`).all(...params) as StoredLine[];
  }

  private query(sql: string): Database.Statement {
    let query = this.queries.get(sql);
    if (!query) this.queries.set(sql, (query = this.db.prepare(sql)));
    return query;
  }

  forget(appId: string): void {
    if (this.closed) return;
    this.pending = this.pending.filter((p) => p.app !== appId);
    this.db.prepare('DELETE FROM lines WHERE app = ?').run(appId);
  }

  /** Commits every queued line now. */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending.length === 0 || this.closed) return;
    const batch = this.pending;
    this.pending = [];
    try {
      this.commit(batch);
    } catch (err) {
      // A full disk must not take the dyno or the API down with it: the lines are lost, and said so.
      this.failures++;
      this.options.log?.error({ err: errorMessage(err), lines: batch.length, failures: this.failures }, 'could not store log lines');
    }
  }

  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    this.db.close();
  }
}
