import { clientFor } from '../../api-client.js';
import type { SniEndpoint } from '../../api-types.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { BerthError, ErrorCode, invalid } from '../../../domain/errors.js';
import { step } from '../../output.js';

export const register: Register = (program, ctx) => {
  appFlags(program.command('certs:remove').description('remove an SSL certificate from an app'))
    .option('--name <name>', 'name of the certificate to remove (needed when the app has several)')
    .action(async (opts: AppFlags & { name?: string }) => {
      const name = appName(ctx, opts);
      const api = clientFor(ctx);
      const certs = await api.get<SniEndpoint[]>(`/apps/${enc(name)}/sni-endpoints`);
      if (certs.length === 0) throw new BerthError(ErrorCode.NotFound, `${name} has no SSL certificates.`);
      const matching = opts.name ? certs.filter((c) => c.name === opts.name) : certs;
      if (matching.length === 0) throw new BerthError(ErrorCode.NotFound, `${name} has no SSL certificate named ${opts.name ?? ''}; see berth certs -a ${name}.`);
      if (matching.length > 1) throw invalid(`${name} has ${certs.length} certificates; pass --name (one of ${certs.map((c) => c.name).join(', ')}).`);
      const cert = matching[0] as SniEndpoint;
      await step(ctx, `Removing SSL certificate ${cert.name} from ${name}`, () => api.request('DELETE', `/apps/${enc(name)}/sni-endpoints/${enc(cert.id)}`));
    });
};
