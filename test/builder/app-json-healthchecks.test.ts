import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseHealthChecks, readAppJsonHealthChecks } from '../../src/builder/app-json.js';
import { effectiveHealthChecks, normalizeHealthCheck } from '../../src/domain/records/health.js';
import { codecs } from '../../src/domain/records.js';

describe("app.json's healthchecks", () => {
  it("reads Dokku's schema with its defaults filled in", () => {
    const r = parseHealthChecks({ healthchecks: { web: [{ type: 'startup', name: 'web check', description: 'ignored', path: '/health', attempts: 3 }, { type: 'liveness', path: '/live', timeout: 2, wait: 10, initialDelay: 5 }] } });
    expect(r).toEqual({
      checks: {
        web: [
          { type: 'startup', name: 'web check', path: '/health', attempts: 3, timeout: 5, wait: 5, initialDelay: 0 },
          { type: 'liveness', path: '/live', attempts: 3, timeout: 2, wait: 10, initialDelay: 5 },
        ],
      },
      notes: [],
    });
  });

  it('skips what Berth cannot run (command, uptime and listening checks, types without $PORT) with a note', () => {
    const r = parseHealthChecks({ healthchecks: { web: [{ command: ['/app/check.sh'] }, { uptime: 10 }, { path: '/ok' }], worker: [{ path: '/x' }] } });
    expect(r.checks).toEqual({ web: [{ type: 'startup', path: '/ok', attempts: 3, timeout: 5, wait: 5, initialDelay: 0 }] });
    expect(r.notes).toEqual([
      'healthchecks.web[0]: skipped (Berth runs HTTP path checks only, not "command" checks)',
      'healthchecks.web[1]: skipped (Berth runs HTTP path checks only, not "uptime" checks)',
      'healthchecks.worker[0]: skipped (only web dynos listen on $PORT)',
    ]);
  });

  it.each([
    [{ path: 'health' }, 'path must start with /'],
    [{ path: '/a b' }, 'path must start with /'],
    [{ path: '/a\r\nX-Evil: 1' }, 'path must start with /'],
    [{ path: '/', attempts: 0 }, 'attempts must be a whole number from 1 to 60'],
    [{ path: '/', attempts: 1e9 }, 'attempts must be a whole number from 1 to 60'],
    [{ path: '/', timeout: 1.5 }, 'timeout must be a whole number from 1 to 60'],
    [{ path: '/', wait: 0 }, 'wait must be a whole number from 1 to 300'],
    [{ path: '/', initialDelay: '5' }, 'initialDelay must be a whole number from 0 to 600'],
    [{ path: '/', type: 'sometimes' }, 'type must be one of startup, liveness, readiness'],
    [{ path: '/', content: 'a\nb' }, 'content must be text'],
  ])('refuses %j: %s', (check, message) => {
    expect(() => parseHealthChecks({ healthchecks: { web: [check] } })).toThrow(message);
    expect(() => normalizeHealthCheck(check)).toThrow(message);
  });

  it('refuses a bad shape and a bad process type name, and reads a missing or unparsable app.json as none', () => {
    expect(() => parseHealthChecks({ healthchecks: [] })).toThrow('healthchecks must be an object');
    expect(() => parseHealthChecks({ healthchecks: { web: {} } })).toThrow('must be a list');
    expect(() => parseHealthChecks({ healthchecks: { 'we b': [] } })).toThrow('invalid process type name');
    const dir = mkdtempSync(join(tmpdir(), 'berth-appjson-'));
    try {
      expect(readAppJsonHealthChecks(dir)).toEqual({ notes: [] });
      writeFileSync(join(dir, 'app.json'), '{not json');
      expect(readAppJsonHealthChecks(dir)).toEqual({ notes: [] });
      writeFileSync(join(dir, 'app.json'), JSON.stringify({ healthchecks: { web: [{ path: '/up' }] } }));
      expect(readAppJsonHealthChecks(dir).checks?.web?.[0]?.path).toBe('/up');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("an override replaces app.json's checks of the same check type only", () => {
    const startup = normalizeHealthCheck({ path: '/a' });
    const live = normalizeHealthCheck({ type: 'liveness', path: '/b' });
    const mine = normalizeHealthCheck({ path: '/mine' });
    expect(effectiveHealthChecks({ web: [startup, live] }, { web: [mine] }, 'web')).toEqual([live, mine]);
    expect(effectiveHealthChecks({ web: [startup] }, undefined, 'web')).toEqual([startup]);
    expect(effectiveHealthChecks(undefined, undefined, 'web')).toEqual([]);
    expect(effectiveHealthChecks({ web: [startup] }, {}, '__proto__')).toEqual([]);
  });

  it('a slug record with malformed checks still reads, as having none', () => {
    const slug = { id: 's', app_id: 'a', checksum: `SHA256:${'0'.repeat(64)}`, size: 1, process_types: {}, commit: null, commit_description: null, buildpack_provided_description: null, stack: { name: 'x' }, created_at: 'now', updated_at: 'now' };
    expect(codecs.slug.decode(JSON.stringify({ ...slug, healthchecks: { web: [{ path: 'no-slash' }] } })).healthchecks).toBeUndefined();
    expect(() => codecs.healthchecks.decode(JSON.stringify({ web: [{ type: 'startup', path: '/x y', attempts: 1, timeout: 1, wait: 1, initialDelay: 0 }] }))).toThrow();
  });
});
