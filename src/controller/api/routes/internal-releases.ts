import type { FastifyInstance } from 'fastify';
import { get, list } from '../../../domain/codec.js';
import { notFound } from '../../../domain/errors.js';
import { keys } from '../../../domain/keys.js';
import { codecs } from '../../../domain/records.js';
import { allocateUid } from '../../../sandbox/index.js';
import type { Services } from '../../services/index.js';

const ID = /^[0-9a-f-]{36}$/;

/**
 * A release of a dyno assigned to the calling machine, with its app's uid: how an agent machine
 * of a secured cluster learns its dynos' config, which its certificate reads only sealed. A
 * machine gets the releases of its own units, nothing else (404, as for an app a user cannot see);
 * servers hold the key and read the store themselves, but may ask too.
 */
export function registerInternalReleaseRoutes(api: FastifyInstance, s: Services): void {
  api.get('/internal/releases/:app/:version', { config: { cluster: true } }, async (req) => {
    const { app, version } = req.params as { app: string; version: string };
    const v = Number(version);
    if (!ID.test(app) || !Number.isInteger(v) || v < 1) throw notFound('release');
    if (req.machine.role === 'agent') {
      // One range over this machine's units: proportional to what it runs.
      const mine = await list(s.store, keys.unitsOn(req.machine.id), codecs.unit);
      if (!mine.some((u) => u.value.appId === app && u.value.release === v)) throw notFound('release');
    }
    const release = await get(s.store, keys.release(app, v), codecs.release);
    if (!release) throw notFound('release');
    return { release: release.value, uid: await allocateUid(s.store, app) };
  });
}
