import { clientFor } from '../../api-client.js';
import type { SniEndpoint } from '../../api-types.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { json, table } from '../../output.js';

/** "2027-01-31 12:00 UTC", as the heroku CLI shows certificate dates. */
export const certDate = (iso: string): string => `${iso.slice(0, 16).replace('T', ' ')} UTC`;

export const register: Register = (program, ctx) => {
  appFlags(program.command('certs').description('list SSL certificates for an app'))
    .option('--json', 'output in json format')
    .action(async (opts: AppFlags) => {
      const name = appName(ctx, opts);
      const certs = await clientFor(ctx).get<SniEndpoint[]>(`/apps/${enc(name)}/sni-endpoints`);
      if (opts.json) return json(ctx, certs);
      if (certs.length === 0) return ctx.out(`${name} has no SSL certificates.\nUse berth certs:add CRT KEY to add one.`);
      const rows = certs.map((c) => [c.name, c.ssl_cert.cert_domains.join(', '), certDate(c.ssl_cert.expires_at), c.ssl_cert['ca_signed?'] ? 'True' : 'False', 'SNI', c.domains.join(', ') || '(none yet)']);
      ctx.out(table(['Name', 'Common Name(s)', 'Expires', 'Trusted', 'Type', 'Domains'], rows));
    });
};
