import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { clientFor } from '../../api-client.js';
import type { SniEndpoint } from '../../api-types.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import type { CliContext } from '../../context.js';
import { errorMessage, invalid } from '../../../domain/errors.js';
import { keyValues, step } from '../../output.js';
import { certDate } from './index.js';

function readPem(ctx: CliContext, file: string, what: string): string {
  try {
    return readFileSync(resolve(ctx.cwd, file), 'utf8');
  } catch (err) {
    throw invalid(`Cannot read the ${what} ${file}: ${errorMessage(err)}`);
  }
}

/** What `heroku certs:add` prints after adding: the certificate's details and its trust. */
export function certificateDetails(c: SniEndpoint, app: string): string {
  const lines = [
    'Certificate details:',
    keyValues([
      ['Common Name(s)', c.ssl_cert.cert_domains.join(', ')],
      ['Expires At', certDate(c.ssl_cert.expires_at)],
      ['Issuer', c.ssl_cert.issuer],
      ['Starts At', certDate(c.ssl_cert.starts_at)],
      ['Subject', c.ssl_cert.subject],
      ['Domain(s)', c.domains.join(', ') || '(none)'],
    ]),
    c.ssl_cert['ca_signed?'] ? 'SSL certificate is verified by a root authority.' : c.ssl_cert['self_signed?'] ? 'SSL certificate is self signed.' : 'SSL certificate is not trusted.',
  ];
  if (c.domains.length === 0) lines.push(`No hostname of ${app} is covered by it yet; add one with berth domains:add HOSTNAME -a ${app}.`);
  return lines.join('\n');
}

export const register: Register = (program, ctx) => {
  appFlags(program.command('certs:add <CERT_FILE> <KEY_FILE>').description('add an SSL certificate (PEM chain, leaf first) and its private key to an app')).action(
    async (certFile: string, keyFile: string, opts: AppFlags) => {
      const name = appName(ctx, opts);
      const body = { certificate_chain: readPem(ctx, certFile, 'certificate'), private_key: readPem(ctx, keyFile, 'private key') };
      const cert = await step(ctx, `Adding SSL certificate to ${name}`, () => clientFor(ctx).request<SniEndpoint>('POST', `/apps/${enc(name)}/sni-endpoints`, body));
      ctx.out(certificateDetails(cert, name));
    },
  );
};
