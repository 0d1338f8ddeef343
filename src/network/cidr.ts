import ipaddr from 'ipaddr.js';
import { invalid } from '../domain/errors.js';

/** IPv4 ranges as integers: what subnet and address allocation need, parsed by ipaddr.js. */
export interface Range {
  /** The network address as an unsigned 32-bit integer. */
  base: number;
  bits: number;
}

export function toInt(address: string): number {
  return ipaddr.IPv4.parse(address).toByteArray().reduce((n, b) => n * 256 + b, 0);
}

export function toAddress(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

export function isIPv4(text: string): boolean {
  return ipaddr.IPv4.isValidFourPartDecimal(text);
}

/** A CIDR whose host bits are zero, e.g. `10.244.0.0/16`; anything else is refused by name. */
export function parseCidr(text: string, what = 'range'): Range {
  let parsed: [ipaddr.IPv4, number];
  try {
    parsed = ipaddr.IPv4.parseCIDR(text);
  } catch {
    throw invalid(`The ${what} must be an IPv4 CIDR like 10.244.0.0/16, got "${text}".`);
  }
  const [address, bits] = parsed;
  const base = toInt(address.toString());
  if (base % 2 ** (32 - bits) !== 0) throw invalid(`The ${what} ${text} has host bits set; did you mean ${toAddress(base - (base % 2 ** (32 - bits)))}/${bits}?`);
  return { base, bits };
}

export function formatCidr(r: Range): string {
  return `${toAddress(r.base)}/${r.bits}`;
}

export function size(r: Range): number {
  return 2 ** (32 - r.bits);
}

export function contains(r: Range, address: string | number): boolean {
  const n = typeof address === 'number' ? address : toInt(address);
  return n >= r.base && n < r.base + size(r);
}

export function overlaps(a: Range, b: Range): boolean {
  return a.base < b.base + size(b) && b.base < a.base + size(a);
}

/** The `index`-th subnet of `bits` inside `r`. */
export function subnetAt(r: Range, bits: number, index: number): Range {
  return { base: r.base + index * 2 ** (32 - bits), bits };
}

/** The `offset`-th address of a range (`.0` is offset 0). */
export function addressAt(r: Range, offset: number): string {
  return toAddress(r.base + offset);
}
