/**
 * The router: nginx + Lua, vhosts rendered by the templater, endpoints set in place without
 * reloads, applied revision reported for rollouts.
 */
export { Router, routerUnavailable, type RouterOptions } from './router.js';
export { NGINX_TEMPLATE } from './nginx-template.js';
