/**
 * One node's composition root (fleet's server.New/Run/Stop): `startNode` builds every component of
 * the roles it is given, each with its dependencies passed in, nothing a singleton, and returns
 * what `berth up` / `berth agent` print as data, with the one `stop()` that takes the node down in
 * `SHUTDOWN_ORDER`. The CLI parses flags, reads the environment, waits for a signal and prints.
 *
 * - A platform node (`roles.controller`, with any of builder, scheduler, router, agent) opens the
 *   store and bootstraps it (the platform record, the first admin, the cluster join token).
 * - An agent-only node (`join` and `roles.agent`) joins through a controller, which names the store.
 */
import { startAgentNode } from './agent-node.js';
import { startPlatformNode } from './platform.js';
import type { AgentNodeOptions, AgentSummary, Node, NodeOptions, PlatformNodeOptions, PlatformSummary } from './types.js';

export { bootstrap, type BootstrapOptions } from './bootstrap.js';
export { SHUTDOWN_ORDER, type Part } from './shutdown.js';
export type * from './types.js';

export function startNode(options: PlatformNodeOptions): Promise<Node<PlatformSummary>>;
export function startNode(options: AgentNodeOptions): Promise<Node<AgentSummary>>;
export function startNode(options: NodeOptions): Promise<Node<PlatformSummary> | Node<AgentSummary>>;
export function startNode(options: NodeOptions): Promise<Node<PlatformSummary> | Node<AgentSummary>> {
  return 'join' in options ? startAgentNode(options) : startPlatformNode(options);
}
