import { apiToken, clientFor } from '../../api-client.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { invalid } from '../../../domain/errors.js';
import type { Build } from './index.js';

/** `berth builds:output [ID]`: a build's output, followed live while it runs (the latest by default). */
export const register: Register = (program, ctx) => {
  appFlags(program.command('builds:output [id]').description("show a build's output, following it while it runs")).action(async (id: string | undefined, opts: AppFlags) => {
    const name = appName(ctx, opts);
    const api = clientFor(ctx);
    let build = id;
    if (!build) {
      const all = await api.get<Build[]>(`/apps/${enc(name)}/builds`);
      build = all.sort((a, b) => a.created_at.localeCompare(b.created_at)).pop()?.id;
      if (!build) throw invalid(`${name} has no builds.`);
    }
    // The client's fetch: it trusts the certificate `berth login` pinned for this URL.
    const res = await api.fetch(`${api.baseUrl}/apps/${enc(name)}/builds/${enc(build)}/output`, { headers: { authorization: `Bearer ${apiToken(ctx, api.baseUrl) ?? ''}` } });
    if (!res.ok || !res.body) throw invalid(`Could not read the output of build ${build} (HTTP ${res.status}).`);
    const decoder = new TextDecoder();
    let pending = '';
    for await (const chunk of res.body) {
      pending += decoder.decode(chunk as Uint8Array, { stream: true });
      const cut = pending.lastIndexOf('\n');
      if (cut >= 0) {
        ctx.out(pending.slice(0, cut));
        pending = pending.slice(cut + 1);
      }
    }
    if (pending) ctx.out(pending);
  });
};
