import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { ApiError, apiToken, unreachable, type ApiClient } from '../../api-client.js';
import { enc } from '../../command.js';
import type { CliContext, Terminal } from '../../context.js';

/** What `…/dynos/run.N/attach` streams, one JSON object per line. */
export interface AttachEvent {
  state?: string;
  name?: string;
  stream?: 'stdout' | 'stderr';
  data?: string;
  exit?: number;
  error?: string;
}

export interface Attached {
  events: AsyncGenerator<AttachEvent>;
  /** Starts sending this terminal's input to the dyno; returns what undoes it. */
  relayInput(terminal: Terminal, tty: boolean): () => void;
  /** Whether the user gave up on the dyno (four Ctrl-Cs). */
  forced(): boolean;
  close(): void;
}

/**
 * Attaches to run.N: a POST whose body stays open as the dyno's stdin while the response streams
 * its output, on one HTTP/1.1 connection (node:http, since fetch cannot read a response before
 * its request body ends). Without input to give, the body ends at once: the dyno reads EOF.
 */
export async function attachDyno(api: ApiClient, ctx: CliContext, app: string, dyno: string, withInput: boolean): Promise<Attached> {
  const url = new URL(`${api.baseUrl}/apps/${enc(app)}/dynos/${enc(dyno)}/attach`);
  const req: ClientRequest = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, {
    // The certificate berth login pinned, as for every other call to the API.
    ...(url.protocol === 'https:' ? api.tlsOptions() : {}),
    method: 'POST',
    headers: {
      accept: 'application/x-ndjson',
      authorization: `Bearer ${apiToken(ctx, api.baseUrl) ?? ''}`,
      'content-type': 'application/octet-stream',
      'transfer-encoding': 'chunked',
    },
  });
  req.setNoDelay(true);
  if (!withInput) req.end();
  else req.flushHeaders();
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    req.once('response', resolve);
    req.once('error', (err) => reject(unreachable(api.baseUrl, err)));
  });
  req.on('error', () => undefined);
  if (res.statusCode !== 200) {
    let text = '';
    for await (const chunk of res) text += String(chunk);
    req.destroy();
    const e = (() => {
      try {
        return JSON.parse(text) as { id?: string; message?: string };
      } catch {
        return {};
      }
    })();
    throw new ApiError(res.statusCode ?? 0, e.id ?? `http_${res.statusCode}`, e.message ?? `Attaching to ${dyno} failed with HTTP ${res.statusCode}.`);
  }
  let forced = false;
  return {
    events: readEvents(res),
    relayInput: (terminal, tty) =>
      relay(req, terminal, tty, () => {
        forced = true;
      }),
    forced: () => forced,
    close: () => req.destroy(),
  };
}

async function* readEvents(res: IncomingMessage): AsyncGenerator<AttachEvent> {
  res.setEncoding('utf8');
  let buffered = '';
  for await (const chunk of res) {
    buffered += String(chunk);
    for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (line.trim()) yield JSON.parse(line) as AttachEvent;
    }
  }
}

/**
 * On a terminal, raw mode sends every key as typed (Ctrl-C included, for the dyno's tty to
 * interrupt its own process); four Ctrl-Cs within a second give up on the dyno, as the heroku CLI
 * does. From a pipe, input goes as it comes and its end is the dyno's EOF.
 */
function relay(req: ClientRequest, terminal: Terminal, tty: boolean, onForce: () => void): () => void {
  const { stdin } = terminal;
  const raw = tty && stdin.isTTY === true;
  if (raw) stdin.setRawMode(true);
  let interrupts: number[] = [];
  const onData = (chunk: Buffer): void => {
    if (raw && chunk.length === 1 && chunk[0] === 3) {
      interrupts = [...interrupts, Date.now()].filter((t) => t > Date.now() - 1000);
      if (interrupts.length >= 4) {
        onForce();
        req.destroy();
        return;
      }
    }
    if (!req.write(chunk)) {
      stdin.pause();
      req.once('drain', () => stdin.resume());
    }
  };
  const onEnd = (): void => void req.end();
  stdin.on('data', onData);
  stdin.once('end', onEnd);
  stdin.resume();
  return () => {
    stdin.off('data', onData);
    stdin.off('end', onEnd);
    if (raw) stdin.setRawMode(false);
    stdin.pause();
  };
}
