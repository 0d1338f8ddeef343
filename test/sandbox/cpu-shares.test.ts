import { describe, expect, it } from 'vitest';
import { cpuSharesFor, DEFAULT_CPU_SHARES, MAX_CPU_SHARES, oneOffCpuSharesFor } from '../../src/sandbox/index.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

describe('cpu shares', () => {
  it('weigh a dyno by its memory up to a 2 GiB dyno, whatever memory a tenant asks for', () => {
    expect([256 * MiB, 512 * MiB, GiB, 2 * GiB].map(cpuSharesFor)).toEqual([512, 1024, 2048, 4096]);
    // limits:set web=64G reserves no CPU: without the cap it weighed 131,072 (128 2 GiB dynos).
    expect([3 * GiB, 14 * GiB, 64 * GiB, Number.MAX_SAFE_INTEGER].map(cpuSharesFor)).toEqual([4096, 4096, 4096, 4096]);
    expect(MAX_CPU_SHARES).toBe(4096);
    expect([0, 1, NaN, Infinity].map(cpuSharesFor)).toEqual([2, 2, DEFAULT_CPU_SHARES, DEFAULT_CPU_SHARES]);
  });

  it('weigh a one-off dyno at most as a default dyno: twenty runs of run=64G take no more than twenty standard dynos', () => {
    expect([64 * GiB, 2 * GiB, 512 * MiB].map(oneOffCpuSharesFor)).toEqual([DEFAULT_CPU_SHARES, DEFAULT_CPU_SHARES, DEFAULT_CPU_SHARES]);
    expect(oneOffCpuSharesFor(256 * MiB)).toBe(512);
  });
});
