import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { RecordMalformed } from '../../domain/codec.js';
import { ErrorCode, isBerthError } from '../../domain/errors.js';
import { StoreErrorCode, isStoreError } from '../../store/index.js';

/** The only place a domain error code becomes an HTTP status. */
const STATUS: Record<string, number> = {
  [ErrorCode.NotFound]: 404,
  [ErrorCode.InvalidParams]: 422,
  [ErrorCode.Conflict]: 409,
  [ErrorCode.Forbidden]: 403,
  [ErrorCode.Unauthorized]: 401,
  [ErrorCode.RateLimit]: 429,
  [StoreErrorCode.ValueTooLarge]: 413,
  [StoreErrorCode.Unavailable]: 503,
  // No live server holds a slug right now (all its holders down): retry later.
  slug_unavailable: 503,
};

export function sendError(reply: FastifyReply, status: number, id: string, message: string): FastifyReply {
  // git only sends credentials after a challenge; API clients ignore it.
  if (status === 401) reply.header('WWW-Authenticate', 'Basic realm="Berth"');
  return reply.code(status).type('application/json').send({ id, message });
}

/** Heroku's error body, `{id, message}`, for every failure, whatever raised it. */
export function errorHandler(err: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (err.validation) {
    const first = err.validation[0];
    const where = first?.instancePath ? first.instancePath.replace(/^\//, '').replace(/\//g, '.') : (first?.params as { missingProperty?: string } | undefined)?.missingProperty;
    const field = where ? `${err.validationContext ?? 'body'}.${where}` : (err.validationContext ?? 'body');
    return sendError(reply, 422, ErrorCode.InvalidParams, `Invalid ${field}: ${first?.message ?? err.message}.`);
  }
  if (isBerthError(err)) {
    const status = STATUS[err.code] ?? (isStoreError(err) ? 503 : 500);
    if (status >= 500) request.log.error({ err }, 'request failed');
    // A stored value that does not fit its record (codec.ts) names its key: that is for the log.
    const message = err.code === RecordMalformed ? 'Internal server error.' : err.message;
    return sendError(reply, status, status === 500 && !isStoreError(err) ? 'internal_server_error' : err.code, message);
  }
  if (err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || (err.statusCode === 400 && /JSON/i.test(err.message))) {
    return sendError(reply, 400, 'bad_request', `The request body is not valid JSON: ${err.message}`);
  }
  if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return sendError(reply, 413, 'request_too_large', 'The request body is too large.');
  if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return sendError(reply, 415, 'unsupported_media_type', 'Send the request body as application/json.');
  if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) return sendError(reply, err.statusCode, 'bad_request', err.message);
  request.log.error({ err }, 'request failed');
  return sendError(reply, 500, 'internal_server_error', 'Internal server error.');
}
