import { randomInt } from 'node:crypto';

/** Heroku-style generated app names: adjective-noun-1234. */
const ADJECTIVES = ['calm', 'brave', 'quiet', 'rapid', 'gentle', 'lucky', 'shiny', 'sturdy', 'mellow', 'nimble', 'polar', 'sunny', 'amber', 'cosmic', 'misty', 'rustic'];
const NOUNS = ['harbor', 'anchor', 'reef', 'lagoon', 'beacon', 'tide', 'pier', 'keel', 'buoy', 'cove', 'delta', 'fjord', 'mast', 'quay', 'sail', 'wharf'];

export const APP_NAME = /^[a-z][a-z0-9-]{2,29}$/;

export function generateAppName(): string {
  const pick = (list: string[]): string => list[randomInt(list.length)] ?? 'berth';
  return `${pick(ADJECTIVES)}-${pick(NOUNS)}-${String(randomInt(10_000)).padStart(4, '0')}`;
}
