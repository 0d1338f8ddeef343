# Sourced by ./berth and scripts/test: installs what Berth needs, idempotently.
#   berth_setup <debian packages...>
# Debian packages are installed with apt-get when missing (as root; otherwise it says what to run),
# then `npm ci` runs only when package-lock.json changed since the last install, then the build.
set -euo pipefail

BERTH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

berth_say() { printf -- '-----> %s\n' "$*" >&2; }

berth_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    berth_say "missing Debian packages: ${missing[*]}"
    berth_say "install them with: sudo apt-get install -y ${missing[*]}"
    return 1
  fi
  berth_say "installing Debian packages: ${missing[*]}"
  # The package index on a fresh machine may be empty or stale: refresh it once per run.
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

berth_node() {
  if ! command -v node >/dev/null 2>&1; then
    berth_say "Node.js 20 or newer is required (node was not found)"
    return 1
  fi
  local major
  major="$(node -p 'process.versions.node.split(".")[0]')"
  if [ "$major" -lt 20 ]; then
    berth_say "Node.js 20 or newer is required (found $(node --version))"
    return 1
  fi
}

berth_npm() {
  local stamp="$BERTH_ROOT/node_modules/.berth-lock-sha256"
  local want
  want="$(sha256sum "$BERTH_ROOT/package-lock.json" | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  berth_say "installing npm dependencies (npm ci)"
  (cd "$BERTH_ROOT" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$stamp"
}

berth_build() {
  (cd "$BERTH_ROOT" && npx --no-install tsc -p tsconfig.build.json)
}

# Build tools for better-sqlite3's native module, which compiles from source when no prebuilt
# binary can be fetched.
BERTH_BUILD_PACKAGES=(python3 make g++)

# Debian's nginx package starts its own server on port 80; Berth runs nginx itself, so the
# distribution's service is stopped and disabled (said, not silent).
berth_own_nginx() {
  command -v systemctl >/dev/null 2>&1 || return 0
  if systemctl is-enabled --quiet nginx 2>/dev/null || systemctl is-active --quiet nginx 2>/dev/null; then
    berth_say "stopping and disabling the system nginx service: Berth's router runs its own nginx"
    systemctl disable --now nginx >/dev/null 2>&1 || true
  fi
}

# Debian's etcd-server package starts its own etcd on 127.0.0.1:2379, without TLS or auth; a
# Berth server runs its own member (with both) on that port, so the distribution's service is
# stopped and disabled (said, not silent).
berth_own_etcd() {
  command -v systemctl >/dev/null 2>&1 || return 0
  if systemctl is-enabled --quiet etcd 2>/dev/null || systemctl is-active --quiet etcd 2>/dev/null; then
    berth_say "stopping and disabling the system etcd service: a Berth server runs its own member"
    systemctl disable --now etcd >/dev/null 2>&1 || true
  fi
}

berth_setup() {
  berth_node
  berth_packages "${BERTH_BUILD_PACKAGES[@]}" "$@"
  berth_npm
  berth_build
}
