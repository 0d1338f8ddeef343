import { describe, expect, it } from 'vitest';
import { BerthError } from '../../src/domain/errors.js';
import { formatToken, newSecret, parseToken } from '../../src/cluster/token.js';

const HASH = 'a'.repeat(64);

function refusal(raw: string): BerthError {
  try {
    parseToken(raw);
  } catch (err) {
    expect(err).toBeInstanceOf(BerthError);
    return err as BerthError;
  }
  throw new Error(`parseToken accepted ${JSON.stringify(raw)}`);
}

describe('cluster token', () => {
  it('round-trips through format and parse, surrounding whitespace (a file\'s newline) aside', () => {
    const t = { caHash: '0123456789abcdef'.repeat(4), secret: newSecret() };
    const raw = formatToken(t);
    expect(raw).toBe(`B10${t.caHash}::${t.secret}`);
    expect(parseToken(raw)).toEqual(t);
    expect(parseToken(`  ${raw}\n`)).toEqual(t);
  });

  it('makes a new secret every time, one parseToken takes', () => {
    const a = newSecret();
    const b = newSecret();
    expect(a).not.toBe(b);
    expect(parseToken(formatToken({ caHash: HASH, secret: a })).secret).toBe(a);
  });

  // Each of these carries a secret-looking part; none of them may be echoed back.
  const secret = 'berth_s3cr3t_do_not_echo_0123456789';
  const malformed: Record<string, string> = {
    'a bare secret': secret,
    'no B10 prefix': `${HASH}::${secret}`,
    'another version': `B11${HASH}::${secret}`,
    'a short CA hash': `B10${'a'.repeat(63)}::${secret}`,
    'an upper-case CA hash': `B10${'A'.repeat(64)}::${secret}`,
    'one colon': `B10${HASH}:${secret}`,
    'an empty secret': `B10${HASH}::`,
    'a secret too short': `B10${HASH}::berth_short`,
    'a secret with a space': `B10${HASH}::${secret} x`,
    'a secret with a slash': `B10${HASH}::${secret}/x`,
    'a secret too long': `B10${HASH}::${secret}${'x'.repeat(200)}`,
    'an empty string': '',
  };
  for (const [what, raw] of Object.entries(malformed)) {
    it(`refuses ${what} as invalid_params without echoing it`, () => {
      const err = refusal(raw);
      expect(err.code).toBe('invalid_params');
      expect(err.message).not.toContain('s3cr3t');
      expect(err.message).not.toContain('berth_short');
    });
  }
});
