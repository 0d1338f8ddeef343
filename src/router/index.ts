/**
 * The router: nginx + Lua, vhosts (and TLS per hostname) rendered by the templater, endpoints set
 * in place without reloads, applied revision reported for rollouts, request lines in the app's logs.
 */
export { Router, routerUnavailable, type RouterOptions } from './router.js';
export { NGINX_TEMPLATE } from './nginx-template.js';
export { routerLogLine, type AppLog, type AccessEntry } from './logs.js';
