import { describe, expect, it } from 'vitest';
import { certNameCovers, certsForHosts, type CertRecord } from '../../src/domain/certs.js';
import { checkRouterSetting, effectiveRouterSettings, nginxTimeMs } from '../../src/domain/router-settings.js';
import { routerLogLine, type AccessEntry } from '../../src/router/index.js';

const entry = (over: Partial<AccessEntry>): AccessEntry => ({
  app: 'id',
  method: 'GET',
  path: '/',
  host: 'shop.berth.test',
  request_id: 'r1',
  fwd: '10.0.0.1',
  dyno: 'web.1',
  status: '200',
  upstream_status: '200',
  connect: '0.001',
  header: '0.003',
  response: '0.004',
  bytes: '120',
  protocol: 'https',
  ...over,
});

describe("router log lines (Heroku's format)", () => {
  it('reports a served request with connect and service times in ms', () => {
    expect(routerLogLine(entry({}))).toBe('at=info method=GET path="/" host=shop.berth.test request_id=r1 fwd="10.0.0.1" dyno=web.1 connect=1ms service=3ms status=200 bytes=120 protocol=https');
  });

  it('names the error the way Heroku does, and leaves answers from the app alone', () => {
    const code = (over: Partial<AccessEntry>): string => /^at=(\w+)(?: code=(\w+))?/.exec(routerLogLine(entry(over)))?.slice(1).join(' ') ?? '';
    expect(code({ status: '503', dyno: '', upstream_status: '', connect: '', header: '', response: '' })).toBe('error H14');
    expect(code({ status: '504', upstream_status: '504', header: '-', response: '30.001' })).toBe('error H12');
    expect(code({ status: '504', upstream_status: '504', connect: '-', header: '-', response: '5.000' })).toBe('error H19');
    expect(code({ status: '502', upstream_status: '502', header: '-' })).toBe('error H13');
    expect(code({ status: '502', upstream_status: '502, 502', connect: '-, -', header: '-, -', response: '0.000, 0.000' })).toBe('error H10');
    expect(code({ status: '499', upstream_status: '', header: '' })).toBe('info H27');
    // The app's own 503 or 504 is the app's answer, not a router error.
    expect(code({ status: '503', upstream_status: '503' })).toBe('info ');
    expect(code({ status: '413', dyno: '', upstream_status: '', connect: '', header: '', response: '' })).toBe('info ');
  });

  it('keeps the line parseable whatever the client sent', () => {
    const line = routerLogLine(entry({ path: '/a" b', host: 'evil host', request_id: 'x y', fwd: '1.2.3.4, "x"' }));
    expect(line).toContain('path="/a\\" b" host="evil host" request_id="x y" fwd="1.2.3.4, \\"x\\""');
  });
});

describe('which certificate serves a hostname', () => {
  const cert = (id: string, names: string[], updated: string): CertRecord =>
    ({ id, name: id, app_id: 'a', certificate_chain: '', private_key: '', created_at: updated, updated_at: updated, ssl_cert: { cert_domains: names, starts_at: '', expires_at: '', issuer: '', subject: '', 'ca_signed?': false, 'self_signed?': true } }) as CertRecord;

  it('lets a wildcard stand for exactly one label', () => {
    expect(certNameCovers('*.example.com', 'www.example.com')).toBe(true);
    expect(certNameCovers('*.example.com', 'a.b.example.com')).toBe(false);
    expect(certNameCovers('*.example.com', 'example.com')).toBe(false);
    expect(certNameCovers('example.com', 'example.com')).toBe(true);
  });

  it('prefers an exact name, then the newest certificate', () => {
    const wild = cert('w', ['*.example.com'], '2026-02-01');
    const exact = cert('e', ['www.example.com'], '2026-01-01');
    const newer = cert('n', ['*.example.com'], '2026-03-01');
    const chosen = certsForHosts(['www.example.com', 'api.example.com', 'other.test'], [wild, exact, newer]);
    expect(Object.fromEntries([...chosen].map(([h, c]) => [h, c.id]))).toEqual({ 'www.example.com': 'e', 'api.example.com': 'n' });
  });
});

describe('router settings', () => {
  it("reads nginx's time syntax", () => {
    expect(nginxTimeMs('30')).toBe(30_000);
    expect(nginxTimeMs('500ms')).toBe(500);
    expect(nginxTimeMs('1m30s')).toBe(90_000);
    expect(nginxTimeMs('1 m')).toBeUndefined();
  });

  it('normalises what it stores and falls back to defaults for what it cannot use', () => {
    expect(checkRouterSetting('body_size', '10M')).toBe('10m');
    expect(checkRouterSetting('body_size', '0')).toBe('0');
    expect(checkRouterSetting('worker_connections', '01024')).toBe('1024');
    expect(() => checkRouterSetting('body_size', '10m; evil')).toThrow(/nginx size/);
    const stored: Record<string, string> = { body_size: '1m', read_timeout: 'forever' };
    expect(effectiveRouterSettings((n) => stored[n])).toEqual({ body_size: '1m', connect_timeout: '5s', read_timeout: '30s', worker_connections: '4096' });
  });
});
