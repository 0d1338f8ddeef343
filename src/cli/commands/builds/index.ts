import { clientFor } from '../../api-client.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { header, json, table } from '../../output.js';

export interface Build {
  id: string;
  status: string;
  created_at: string;
  user: { email: string };
  source_blob: { version: string | null };
  output_stream_url: string | null;
}

export const register: Register = (program, ctx) => {
  appFlags(program.command('builds').description("list an app's builds, newest first"))
    .option('-n, --num <n>', 'number of builds to show', '15')
    .option('--json', 'output in json format')
    .action(async (opts: AppFlags & { num: string }) => {
      const name = appName(ctx, opts);
      const builds = (await clientFor(ctx).get<Build[]>(`/apps/${enc(name)}/builds`)).reverse().slice(0, Number(opts.num) || 15);
      if (opts.json) return json(ctx, builds);
      if (builds.length === 0) return ctx.out(`${name} has no builds.`);
      const rows = builds.map((b) => [b.id, b.status, (b.source_blob.version ?? '').slice(0, 7), b.user.email, b.created_at]);
      ctx.out(`${header(`${name} Builds`)}\n${table(['id', 'status', 'commit', 'user', 'created_at'], rows)}`);
    });
};
