import { Option } from 'commander';
import { clientFor } from '../../api-client.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { BerthError, invalid } from '../../../domain/errors.js';

interface LogsFlags extends AppFlags {
  num: string;
  tail?: boolean;
  processType?: string;
  dyno?: string;
  source?: string;
}

/** `berth logs`, as `heroku logs`: a log session, then its URL read as plain text until it ends. */
export const register: Register = (program, ctx) => {
  appFlags(program.command('logs').description('display recent log output'))
    .option('-n, --num <n>', 'number of lines to display', '100')
    .option('-t, --tail', 'continually stream logs')
    .addOption(new Option('-p, --process-type <type>', 'only show output from this process type (such as "web" or "worker")').conflicts('dyno'))
    .option('-d, --dyno <dyno>', 'only show output from this dyno (such as "web.1")')
    .option('-s, --source <source>', 'only show output from this source (such as "app" or "berth")')
    .action(async (opts: LogsFlags) => {
      const name = appName(ctx, opts);
      const lines = Number(opts.num);
      if (!Number.isInteger(lines) || lines < 0) throw invalid(`--num must be a whole number of lines, got "${opts.num}".`);
      const dyno = opts.dyno ?? opts.processType;
      const api = clientFor(ctx);
      const session = await api.request<{ logplex_url: string }>('POST', `/apps/${enc(name)}/log-sessions`, {
        lines,
        tail: Boolean(opts.tail),
        ...(dyno ? { dyno } : {}),
        ...(opts.source ? { source: opts.source } : {}),
      });
      let res: Response;
      try {
        // The stream is the API's own (its URL as the server names itself): the same trust as the API.
        res = await api.fetch(session.logplex_url, { headers: { accept: 'text/plain' } });
      } catch (err) {
        throw new BerthError('unreachable', `Cannot read the log stream at ${new URL(session.logplex_url).origin}: ${(err as Error).cause ?? (err as Error).message}`);
      }
      if (!res.ok || !res.body) throw new BerthError(`http_${res.status}`, `The log stream answered HTTP ${res.status}.`);
      // Lines are printed as they complete, so a tail shows each one as soon as it arrives.
      const decoder = new TextDecoder();
      let pending = '';
      for await (const chunk of res.body) {
        pending += decoder.decode(chunk, { stream: true });
        const complete = pending.split('\n');
        pending = complete.pop() ?? '';
        for (const line of complete) ctx.out(line);
      }
      pending += decoder.decode();
      if (pending) ctx.out(pending);
    });
};
