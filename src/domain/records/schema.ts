import { z } from 'zod';

/** The zod pieces every record schema is made of. */
export const str = z.string();
export const num = z.number();
export const int = z.number().int();
export const strings = z.record(z.string(), z.string());
export const stamp = { created_at: str, updated_at: str };
