# Sourced by ./berth and scripts/test: installs what Berth needs, idempotently.
#   berth_setup <debian packages...>   everything: Debian packages, npm dependencies, the build
#   berth_quick                        the build only when it is missing or stale (every other command)
# Debian packages are installed with apt-get when missing (as root; otherwise it says what to run);
# npm dependencies when package-lock.json changed since the last install; the build when a file under
# src/, package-lock.json or a tsconfig is newer than the last build's stamp.
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
  if [ -d "$BERTH_ROOT/node_modules" ]; then
    # An existing tree is brought to the lockfile in place: `npm ci` would delete it first, pulling
    # it from under every berth process and test running from this checkout meanwhile.
    berth_say "updating npm dependencies to package-lock.json (npm install)"
    (cd "$BERTH_ROOT" && npm install --no-audit --no-fund --loglevel=error)
  else
    berth_say "installing npm dependencies (npm ci)"
    (cd "$BERTH_ROOT" && npm ci --no-audit --no-fund --loglevel=error)
  fi
  echo "$want" > "$stamp"
}

BERTH_BUILD_STAMP="$BERTH_ROOT/dist/.berth-build-stamp"

# True when the last build is newer than everything it was made from. Cheap (a few ms): mtimes
# only, and find stops at the first newer file. A deleted source file shows as its directory's mtime.
berth_built() {
  local stamp="$BERTH_BUILD_STAMP" f
  [ -f "$stamp" ] && [ -f "$BERTH_ROOT/node_modules/.berth-lock-sha256" ] || return 1
  for f in package-lock.json tsconfig.json tsconfig.build.json; do
    [ "$BERTH_ROOT/$f" -nt "$stamp" ] && return 1
  done
  [ -z "$(find "$BERTH_ROOT/src" -newer "$stamp" -print -quit)" ]
}

berth_build() {
  berth_built && return 0
  # Stamped with the time the build started: a file saved during the build makes the next run build again.
  mkdir -p "$BERTH_ROOT/dist"
  touch "$BERTH_BUILD_STAMP.new"
  (cd "$BERTH_ROOT" && npx --no-install tsc -p tsconfig.build.json)
  mv "$BERTH_BUILD_STAMP.new" "$BERTH_BUILD_STAMP"
}

# Runs "$@" holding the checkout's setup lock: two commands started together must not run npm or
# tsc over each other (two npm installs into one node_modules break it).
berth_locked() {
  if ! command -v flock >/dev/null 2>&1; then "$@"; return; fi
  mkdir -p "$BERTH_ROOT/dist"
  (
    flock 9
    "$@"
  ) 9>"$BERTH_ROOT/dist/.berth-setup.lock"
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
  berth_locked berth_npm
  berth_locked berth_build
}

# What every command but up/agent needs: a build that matches the sources. No Debian package checks
# (dpkg-query per package), no npm, no tsc when nothing changed.
berth_quick() {
  berth_built && return 0
  berth_node
  # npm may have to compile better-sqlite3 (a fresh checkout, a new lockfile).
  berth_packages "${BERTH_BUILD_PACKAGES[@]}"
  berth_locked berth_npm
  berth_locked berth_build
}

# A `berth` command on the PATH: as root, /usr/local/bin/berth -> this checkout's wrapper, unless
# that name is already taken by something else (said, and left alone). BERTH_BIN_DIR: another directory.
berth_link() {
  local link="${BERTH_BIN_DIR:-/usr/local/bin}/berth" target="$BERTH_ROOT/berth"
  if [ "$(id -u)" -ne 0 ]; then
    command -v berth >/dev/null 2>&1 || berth_say "to run berth from anywhere: ln -s $target ~/.local/bin/berth (a directory on your PATH)"
    return 0
  fi
  if [ -L "$link" ] && [ "$(readlink -f "$link")" = "$(readlink -f "$target")" ]; then return 0; fi
  if [ -e "$link" ] || [ -L "$link" ]; then
    berth_say "$link exists and is not this checkout's berth; left as it is"
    return 0
  fi
  ln -s "$target" "$link"
  berth_say "installed the berth command: $link -> $target"
}
