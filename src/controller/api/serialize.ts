import type { AppRecord, CollaboratorRecord, DomainRecord, FormationEntry, PlatformSettings, ReleaseRecord, SshKeyRecord, UserRecord } from '../services/types.js';

/**
 * Heroku Platform API v3 resource shapes. Fields Heroku has and Berth has no notion of are present
 * with their "nothing" value (null, [], false), because clients read them without checking.
 */
const STACK = { id: '00000000-0000-4000-8000-000000000022', name: 'heroku-22' };
const REGION = { id: '00000000-0000-4000-8000-000000000001', name: 'local' };

export const appRef = (app: AppRecord): { id: string; name: string } => ({ id: app.id, name: app.name });

export function account(user: UserRecord): Record<string, unknown> {
  return {
    id: user.id,
    email: user.email,
    name: user.email.split('@')[0],
    allow_tracking: false,
    beta: false,
    created_at: user.created_at,
    updated_at: user.updated_at,
    federated: false,
    identity_provider: null,
    last_login: null,
    sms_number: null,
    suspended_at: null,
    delinquent_at: null,
    two_factor_authentication: false,
    verified: true,
    default_organization: null,
    default_team: null,
    berth_admin: user.admin,
  };
}

export function app(a: AppRecord, owner: UserRecord | undefined, settings: PlatformSettings): Record<string, unknown> {
  return {
    id: a.id,
    name: a.name,
    acm: false,
    archived_at: null,
    buildpack_provided_description: null,
    build_stack: STACK,
    stack: STACK,
    created_at: a.created_at,
    updated_at: a.updated_at,
    released_at: a.released_at,
    git_url: `${settings.apiUrl}/${a.name}.git`,
    web_url: `http://${a.name}.${settings.domain}/`,
    internal_routing: null,
    locked: false,
    create_status: 'complete',
    maintenance: a.maintenance,
    owner: { id: a.owner_id, email: owner?.email ?? null },
    organization: null,
    team: null,
    space: null,
    region: REGION,
    repo_size: null,
    slug_size: null,
    generation: 'cedar',
  };
}

export function release(a: AppRecord, r: ReleaseRecord): Record<string, unknown> {
  return {
    id: r.id,
    version: r.version,
    app: appRef(a),
    addon_plan_names: [],
    artifacts: [],
    created_at: r.created_at,
    updated_at: r.updated_at,
    description: r.description,
    slug: r.slug_id ? { id: r.slug_id } : null,
    status: r.status,
    // Berth's own: why it failed, for `berth releases` and `berth ps`.
    failure_reason: r.failure_reason ?? null,
    user: { id: r.user_id, email: r.user_email },
    current: r.version === (a.current_version ?? a.release_version),
    output_stream_url: null,
    eligible_for_rollback: true,
  };
}

export function formation(a: AppRecord, f: FormationEntry, command: string | undefined): Record<string, unknown> {
  return {
    id: f.id,
    app: appRef(a),
    type: f.type,
    quantity: f.quantity,
    size: f.size,
    dyno_size: { id: null, name: f.size },
    command: command ?? (f.type === 'web' ? 'npm start' : ''),
    created_at: f.created_at,
    updated_at: f.updated_at,
  };
}

export function domain(a: AppRecord, d: DomainRecord, settings: PlatformSettings, sni?: { id: string; name: string }): Record<string, unknown> {
  return {
    id: d.id,
    app: appRef(a),
    hostname: d.hostname,
    kind: d.kind,
    cname: d.kind === 'custom' ? `${a.name}.${settings.domain}` : null,
    status: 'succeeded',
    acm_status: null,
    acm_status_reason: null,
    sni_endpoint: sni ? { id: sni.id, name: sni.name } : null,
    created_at: d.created_at,
    updated_at: d.updated_at,
  };
}

export function collaborator(a: AppRecord, c: CollaboratorRecord, user: UserRecord, role: 'owner' | 'collaborator'): Record<string, unknown> {
  return {
    id: c.id,
    app: appRef(a),
    created_at: c.created_at,
    updated_at: c.updated_at,
    // No `permissions` key: clients read its mere presence as "team app with fine-grained access".
    role,
    user: { id: user.id, email: user.email, federated: false },
  };
}

export function sshKey(user: UserRecord, k: SshKeyRecord): Record<string, unknown> {
  return {
    id: k.id,
    comment: k.comment,
    email: user.email,
    fingerprint: k.fingerprint,
    public_key: k.public_key,
    created_at: k.created_at,
    updated_at: k.updated_at,
  };
}
