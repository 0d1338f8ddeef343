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
