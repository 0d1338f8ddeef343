import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, extname, join } from 'node:path';
import { netrcFor, netrcMachine } from './api-client.js';
import type { CliContext } from './context.js';

/**
 * `berth login` makes `git push` to the platform ask for nothing through a git credential helper
 * scoped to the platform's URL (`credential.<url>.helper` in the user's global git config), not a
 * host-only netrc entry: netrc has no ports, so two platforms on one host (or a platform and any
 * other service there) would share, and overwrite, one entry. git matches the URL's scheme, host
 * and port before it asks the helper, and the helper answers from the token login keeps in
 * ~/.netrc under host:port, so the token is written in one place only, never in .gitconfig.
 */

/** The subcommand git runs as `<helper> get|store|erase`. */
export const HELPER_SUBCOMMAND = 'git:credentials';

function shellQuote(arg: string): string {
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/**
 * The helper value: `!` makes git run it through the shell with the operation appended. The entry
 * beside the CLI's (credential-helper.js) when there is one: it loads only what answering needs,
 * where the whole CLI would load the platform's modules on every push.
 */
export function helperCommand(self: readonly string[]): string {
  const entry = self[self.length - 1] ?? '';
  const helper = join(dirname(entry), `credential-helper${extname(entry)}`);
  const argv = existsSync(helper) ? [...self.slice(0, -1), helper] : [...self, HELPER_SUBCOMMAND];
  return `!${argv.map(shellQuote).join(' ')}`;
}

/** The URL as git's config matches it: no trailing slash, no path, no user info. */
export function credentialUrl(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.host}`;
}

interface GitRun {
  code: number;
  out: string;
  err: string;
}

function git(ctx: CliContext, args: string[]): Promise<GitRun> {
  return new Promise((resolve) => {
    execFile('git', args, { cwd: ctx.home, env: { ...ctx.env, HOME: ctx.home }, timeout: 10_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1) : 0;
      resolve({ code, out: stdout, err: stderr || (err && code === -1 ? err.message : '') });
    });
  });
}

const key = (url: string): string => `credential.${credentialUrl(url)}.helper`;

/**
 * Sets the helper for `url`, replacing whatever helpers the user's global config lists for that
 * URL. The empty value first resets the list, so a generic helper configured earlier (`store`,
 * `cache`) neither answers with a stale token nor is asked to store ours in plain text.
 */
export async function installGitHelper(ctx: CliContext, url: string, self: readonly string[]): Promise<string | undefined> {
  const unset = await git(ctx, ['config', '--global', '--unset-all', key(url)]);
  // 5: nothing was set, which is fine; -1: git could not run at all.
  if (unset.code === -1) return `git is not available (${unset.err.trim()})`;
  for (const value of ['', helperCommand(self)]) {
    const add = await git(ctx, ['config', '--global', '--add', key(url), value]);
    if (add.code !== 0) return add.err.trim() || `git config exited with ${add.code}`;
  }
  return undefined;
}

/** Unsets `<section>.<url>.<name>`, and the URL's section when nothing else is left in it. */
async function unsetScoped(ctx: CliContext, section: string, url: string, name: string): Promise<void> {
  const scoped = `${section}.${credentialUrl(url)}`;
  const unset = await git(ctx, ['config', '--global', '--unset-all', `${scoped}.${name}`]);
  if (unset.code !== 0) return;
  const list = await git(ctx, ['config', '--global', '--name-only', '--list']);
  if (list.code === 0 && !list.out.split('\n').some((n) => n.toLowerCase().startsWith(`${scoped.toLowerCase()}.`))) {
    await git(ctx, ['config', '--global', '--remove-section', scoped]);
  }
}

/** Removes what installGitHelper added. */
export function removeGitHelper(ctx: CliContext, url: string): Promise<void> {
  return unsetScoped(ctx, 'credential', url, 'helper');
}

/**
 * Makes git trust the certificate `berth login` pinned, for this URL only
 * (`http.<url>.sslCAInfo`): other remotes keep the system's CAs.
 */
export async function installGitCa(ctx: CliContext, url: string, caFile: string): Promise<string | undefined> {
  const set = await git(ctx, ['config', '--global', `http.${credentialUrl(url)}.sslCAInfo`, caFile]);
  if (set.code === -1) return `git is not available (${set.err.trim()})`;
  return set.code === 0 ? undefined : set.err.trim() || `git config exited with ${set.code}`;
}

export function removeGitCa(ctx: CliContext, url: string): Promise<void> {
  return unsetScoped(ctx, 'http', url, 'sslCAInfo');
}

/** A value that would end a line of git's credential protocol (and so forge another field). */
const UNSAFE = /[\0\r\n]/;

/**
 * git's credential protocol (gitcredentials(7)): for `get`, `protocol=` and `host=` lines in; the
 * login and token netrc holds for that host:port out, or nothing (git then tries its other
 * helpers, then fails or prompts). `store` and `erase` are no-ops: the token is `berth login`'s
 * to keep and `berth logout`'s to remove.
 */
export function answerCredential(ctx: CliContext, operation: string, input: string): string {
  if (operation !== 'get') return '';
  const fields = new Map<string, string>();
  for (const line of input.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) fields.set(line.slice(0, i), line.slice(i + 1));
  }
  const protocol = fields.get('protocol');
  const host = fields.get('host');
  if ((protocol !== 'http' && protocol !== 'https') || !host || !URL.canParse(`${protocol}://${host}`)) return '';
  const entry = netrcFor(ctx).machines[netrcMachine(`${protocol}://${host}`)];
  const password = entry?.password;
  const login = entry?.login || 'git';
  if (!password || UNSAFE.test(password) || UNSAFE.test(login)) return '';
  return `username=${login}\npassword=${password}\n`;
}

/** More than git ever sends for one credential: the rest is not read. */
const MAX_INPUT = 64 * 1024;

async function readInput(stdin: NodeJS.ReadableStream): Promise<string> {
  let text = '';
  for await (const chunk of stdin) {
    text += String(chunk);
    // git ends its request with a blank line and then closes stdin; stop at either.
    if (text.length > MAX_INPUT || /\n\n$/.test(text)) break;
  }
  return text.slice(0, MAX_INPUT);
}

/** One helper call: git's request from stdin, the answer (if any) to stdout. */
export async function runCredentialHelper(ctx: CliContext, operation: string): Promise<void> {
  const input = operation === 'get' && ctx.terminal ? await readInput(ctx.terminal.stdin) : '';
  const answer = answerCredential(ctx, operation, input);
  if (!answer) return;
  if (ctx.terminal) ctx.terminal.stdout.write(answer);
  else ctx.out(answer);
}
