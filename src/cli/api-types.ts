import type { SslCertInfo } from '../domain/certs.js';

/** The parts of Heroku API resources the CLI prints. */
export interface App {
  id: string;
  name: string;
  owner: { email: string | null };
  web_url: string;
  git_url: string;
  stack: { name: string };
  region: { name: string };
  created_at: string;
  released_at: string | null;
}
export interface Account {
  id: string;
  email: string;
  berth_admin?: boolean;
}
export interface Release {
  id: string;
  version: number;
  description: string;
  status: string;
  failure_reason?: string | null;
  current: boolean;
  user: { email: string };
  created_at: string;
}
export interface FormationEntry {
  type: string;
  quantity: number;
  size: string;
  command: string;
}
export interface Dyno {
  name: string;
  type: string;
  state: string;
  command: string;
  size: string;
  updated_at: string;
  created_at?: string;
  release?: { version: number } | null;
  machine?: string | null;
  /** The dyno's overlay address (Berth's own field). */
  address?: string | null;
  restarts?: number;
  reason?: string | null;
}
export interface Domain {
  id: string;
  hostname: string;
  kind: 'heroku' | 'custom';
  cname: string | null;
  status: string;
}
export interface Collaborator {
  role: string;
  user: { email: string };
}
export interface SshKey {
  id: string;
  comment: string;
  email: string;
  fingerprint: string;
  public_key: string;
}
export interface SniEndpoint {
  id: string;
  name: string;
  created_at: string;
  updated_at: string;
  /** The app's hostnames this certificate serves. */
  domains: string[];
  ssl_cert: SslCertInfo;
}
export interface RouterSetting {
  name: string;
  value: string;
  default: boolean;
  description: string;
}
