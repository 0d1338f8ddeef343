import ipaddr from 'ipaddr.js';
import { invalid } from '../domain/errors.js';

/**
 * IPv4 addresses and ranges for the whole network component. Everything that reaches a kernel
 * command or an nft line (store records, flags) is parsed here first and printed back by us, so a
 * space or newline in a field can never become another command.
 */

/** A range as integers: the network address (unsigned 32-bit) and its prefix length. */
export interface Range {
  base: number;
  bits: number;
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

export function isIPv4(text: string): boolean {
  // Four decimal parts, no leading zeros, no shorthand (ipaddr.js's strict form).
  return ipaddr.IPv4.isValidFourPartDecimal(text);
}

/** The address as an unsigned integer, or undefined if it is not a dotted-quad IPv4 address. */
export function tryToInt(address: string): number | undefined {
  if (!isIPv4(address)) return undefined;
  return ipaddr.IPv4.parse(address).toByteArray().reduce((n, b) => n * 256 + b, 0);
}

export function toInt(address: string): number {
  const n = tryToInt(address);
  if (n === undefined) throw invalid(`"${address}" is not an IPv4 address.`);
  return n;
}

export function toAddress(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

/** `a.b.c.d/len` with no host bits set (a bare address is a /32, as `ip -j` prints one); undefined otherwise. */
export function tryParseCidr(text: string): Range | undefined {
  const [address = '', len, ...rest] = text.split('/');
  const base = tryToInt(address);
  const bits = len === undefined ? 32 : /^(0|[1-9][0-9]?)$/.test(len) ? Number(len) : NaN;
  if (base === undefined || rest.length > 0 || !(bits >= 0 && bits <= 32) || base % 2 ** (32 - bits) !== 0) return undefined;
  return { base, bits };
}

/** As `tryParseCidr`, but a coded error naming `what` and, for host bits, the network meant. */
export function parseCidr(text: string, what = 'range'): Range {
  const r = tryParseCidr(text);
  if (r) return r;
  const [address = '', len = ''] = text.split('/');
  const base = tryToInt(address);
  const bits = Number(len);
  if (base !== undefined && Number.isInteger(bits) && bits >= 0 && bits <= 32) {
    throw invalid(`The ${what} ${text} has host bits set; did you mean ${toAddress(base - (base % 2 ** (32 - bits)))}/${bits}?`);
  }
  throw invalid(`The ${what} must be an IPv4 CIDR like 10.244.0.0/16, got "${text}".`);
}

export function formatCidr(r: Range): string {
  return `${toAddress(r.base)}/${r.bits}`;
}

export function size(r: Range): number {
  return 2 ** (32 - r.bits);
}

export function contains(r: Range, address: string | number): boolean {
  const n = typeof address === 'number' ? address : tryToInt(address);
  return n !== undefined && n >= r.base && n < r.base + size(r);
}

/** Whether `inner` lies wholly inside `outer`. */
export function within(outer: Range, inner: Range): boolean {
  return inner.base >= outer.base && inner.base + size(inner) <= outer.base + size(outer);
}

export function overlaps(a: Range, b: Range): boolean {
  return a.base < b.base + size(b) && b.base < a.base + size(a);
}

export function sameRange(a: Range, b: Range): boolean {
  return a.base === b.base && a.bits === b.bits;
}

/** The `index`-th subnet of `bits` inside `r`. */
export function subnetAt(r: Range, bits: number, index: number): Range {
  return { base: r.base + index * 2 ** (32 - bits), bits };
}

/** The `offset`-th address of a range (`.0` is offset 0). */
export function addressAt(r: Range, offset: number): string {
  return toAddress(r.base + offset);
}

export function isMac(text: string): boolean {
  return MAC.test(text);
}
