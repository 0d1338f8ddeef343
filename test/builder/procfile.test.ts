import { describe, expect, it } from 'vitest';
import { parseProcfile } from '../../src/builder/procfile.js';

describe('Procfile', () => {
  it('reads types and commands, splitting at the first colon', () => {
    const text = [
      '# processes',
      'web: node server.js --port $PORT',
      '',
      '  worker:bundle exec sidekiq -q default:1  ',
      'release: ./bin/migrate http://x:1/y',
      'clock_2-b: echo "a: b"',
    ].join('\n');
    expect(parseProcfile(text)).toEqual({
      web: 'node server.js --port $PORT',
      worker: 'bundle exec sidekiq -q default:1',
      release: './bin/migrate http://x:1/y',
      'clock_2-b': 'echo "a: b"',
    });
  });

  it('accepts CRLF line endings and an empty file', () => {
    expect(parseProcfile('web: a\r\nworker: b\r\n')).toEqual({ web: 'a', worker: 'b' });
    expect(parseProcfile('')).toEqual({});
  });

  it.each([
    ['web: a\nweb: b', /line 2: process type web is already defined on line 1/],
    ['web a', /line 1: expected "type: command"/],
    [': a', /line 1: expected "type: command"/],
    ['we b: a', /line 1: process type "we b"/],
    ['web.1: a', /line 1: process type "web.1"/],
    ['\n\nweb:   ', /line 3: process type web has no command/],
  ])('rejects %j naming the line', (text, error) => {
    expect(() => parseProcfile(text)).toThrow(error);
  });
});
