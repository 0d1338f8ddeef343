# The build's environment, and the runtime vendored into the slug: Node, npm and the app's
# package manager, copied from the read-only toolchain directories Berth prepared before this
# step (BERTH_NODE_DIR and friends: Berth's machines reach the npm registry but not nodejs.org).

require_toolchains() {
  if [ -z "$BERTH_NODE_DIR" ] || [ ! -x "$BERTH_NODE_DIR/bin/node" ]; then
    echo " !     This buildpack runs only in Berth's builder, which provides Node (BERTH_NODE_DIR${BERTH_NODE_DIR:+=$BERTH_NODE_DIR} has no bin/node); elsewhere use heroku/nodejs."
    exit 1
  fi
}

# A checked-in file named .heroku (or .heroku/node) would be overwritten or break the copy.
fail_dot_heroku() {
  local p
  for p in .heroku .heroku/node .heroku/yarn .heroku/pnpm; do
    if [ -e "$BUILD_DIR/$p" ] && [ ! -d "$BUILD_DIR/$p" ] || [ -L "$BUILD_DIR/$p" ]; then
      fail "$p is checked into this app, but the build puts Node and its package manager there." \
        "Remove $p from the repository (or list it in .slugignore) and push again."
    fi
  done
}

# Heroku's defaults for the build (a config var set by the app wins).
create_default_env() {
  export NPM_CONFIG_LOGLEVEL="${NPM_CONFIG_LOGLEVEL:-error}"
  export NODE_MODULES_CACHE="${NODE_MODULES_CACHE:-true}"
  export NODE_ENV="${NODE_ENV:-production}"
  export NODE_VERBOSE="${NODE_VERBOSE:-false}"
  if [ "$PM" = yarn ]; then export USE_YARN_CACHE="${USE_YARN_CACHE:-true}"; fi
  return 0
}

list_node_config() {
  echo ""
  {
    printenv | grep '^NPM_CONFIG_' || true
    printenv | grep '^YARN_' || true
    printenv | grep '^USE_NPM_' || true
    printenv | grep '^USE_YARN_' || true
    printenv | grep '^NODE_' || true
  } | indent
  if [ "$NPM_CONFIG_PRODUCTION" = true ] && [ "$NODE_ENV" != production ]; then
    echo ""
    info "npm scripts will see NODE_ENV=production (not '$NODE_ENV'): NPM_CONFIG_PRODUCTION=true sets it."
  fi
  return 0
}

# Node's heap limit for the build: Heroku gives build dynos 2560 MB; a Berth build gets 3/4 of
# its memory limit (the rest is for the package manager and native compilers), at most that.
create_build_env() {
  if [ -z "$NODE_OPTIONS" ]; then
    local mb=2560 mem="${BERTH_BUILD_MEMORY_MB:-}"
    if [[ "$mem" =~ ^[0-9]+$ ]] && [ "$mem" -gt 0 ] && [ $((mem * 3 / 4)) -lt 2560 ]; then mb=$((mem * 3 / 4)); fi
    export NODE_OPTIONS="--max_old_space_size=$mb"
  fi
}

install_binaries() {
  info "engines.node (package.json):   ${PJ_ENGINES_NODE:-unspecified}"
  info "engines.npm (package.json):    ${PJ_ENGINES_NPM:-unspecified (use default)}"
  if [ "$PM" = yarn ] || [ -n "$PJ_ENGINES_YARN" ]; then info "engines.yarn (package.json):   ${PJ_ENGINES_YARN:-unspecified (use default)}"; fi
  if [ "$PM" = pnpm ] || [ -n "$PJ_ENGINES_PNPM" ]; then info "engines.pnpm (package.json):   ${PJ_ENGINES_PNPM:-unspecified (use default)}"; fi
  if [ -n "$PJ_PACKAGE_MANAGER" ]; then info "packageManager (package.json): $PJ_PACKAGE_MANAGER"; fi
  echo ""
  # The platform's resolver explains its choices (wide ranges, EOL lines): warnings as they
  # are, everything else under this step.
  if [ -n "$BERTH_TOOLCHAIN_NOTES" ]; then
    printf '%s\n' "$BERTH_TOOLCHAIN_NOTES" | sed -E '/^( !|       |$)/!s/^/       /'
    echo ""
  fi

  install_node
  install_npm
  if [ "$PM" = yarn ]; then install_yarn; fi
  if [ "$PM" = pnpm ]; then install_pnpm; fi
  export PATH="$BUILD_DIR/.heroku/node/bin:$BUILD_DIR/.heroku/yarn/bin:$BUILD_DIR/.heroku/pnpm/bin:$PATH"
  # node-gyp builds native modules against the vendored headers: its default, downloading
  # them from nodejs.org, cannot work on Berth's machines.
  export npm_config_nodedir="$BUILD_DIR/.heroku/node"
  configure_registry
}

# copy_tree SRC DEST — the toolchain dirs are read-only and root's: the copy must be the app's.
copy_tree() {
  rm -rf "$2"
  # A reflink where the filesystem can (the copy then costs no data), a plain copy elsewhere.
  cp -R --reflink=auto "$1" "$2"
  chmod -R u+w "$2"
}

install_node() {
  local dest="$BUILD_DIR/.heroku/node" part
  info "Installing node ${BERTH_NODE_VERSION:-}..."
  rm -rf "$dest"
  mkdir -p "$dest/lib/node_modules"
  for part in bin LICENSE; do
    if [ -e "$BERTH_NODE_DIR/$part" ]; then copy_tree "$BERTH_NODE_DIR/$part" "$dest/$part"; fi
  done
  ensure_node_headers
  if ! "$dest/bin/node" --version >/dev/null 2>&1; then
    fail "The vendored Node ${BERTH_NODE_VERSION:-} does not run on this machine." \
      "This is a problem with the platform's toolchain cache, not the app: ask the operator."
  fi
}

# Node's headers for node-gyp (npm_config_nodedir is .heroku/node): a link to the read-only
# toolchain rather than a 67 MB copy, there for every step that may compile (an install, the app's
# build scripts); slim_runtime removes it from the slug.
ensure_node_headers() {
  local dest="$BUILD_DIR/.heroku/node"
  if [ ! -e "$dest/include" ] && [ -d "$BERTH_NODE_DIR/include" ]; then ln -sfn "$BERTH_NODE_DIR/include" "$dest/include"; fi
  return 0
}

install_npm() {
  local node_dir="$BUILD_DIR/.heroku/node"
  if [ -z "$BERTH_NPM_DIR" ] || [ ! -f "$BERTH_NPM_DIR/bin/npm-cli.js" ]; then
    fail "This buildpack runs only in Berth's builder, which provides npm (BERTH_NPM_DIR has no bin/npm-cli.js)."
  fi
  copy_tree "$BERTH_NPM_DIR" "$node_dir/lib/node_modules/npm"
  # The layout of Node's own release tarballs: bin/npm and bin/npx link into lib/node_modules.
  ln -sfn ../lib/node_modules/npm/bin/npm-cli.js "$node_dir/bin/npm"
  ln -sfn ../lib/node_modules/npm/bin/npx-cli.js "$node_dir/bin/npx"
  chmod +x "$node_dir/lib/node_modules/npm/bin/npm-cli.js" "$node_dir/lib/node_modules/npm/bin/npx-cli.js"
  if [ -z "$PJ_ENGINES_NPM" ]; then
    info "Using default npm version: ${BERTH_NPM_VERSION:-}"
  else
    info "Bootstrapping npm $PJ_ENGINES_NPM..."
    info "npm ${BERTH_NPM_VERSION:-} installed"
  fi
}

install_yarn() {
  local dest="$BUILD_DIR/.heroku/yarn"
  if [ -z "$BERTH_YARN_DIR" ] || [ ! -f "$BERTH_YARN_DIR/bin/yarn.js" ]; then
    fail "This buildpack runs only in Berth's builder, which provides Yarn (BERTH_YARN_DIR has no bin/yarn.js)."
  fi
  copy_tree "$BERTH_YARN_DIR" "$dest"
  if [ ! -e "$dest/bin/yarn" ]; then ln -s yarn.js "$dest/bin/yarn"; fi
  chmod +x "$dest/bin/yarn.js" "$dest/bin/yarn"
  if [ "$YARN_BERRY" = true ]; then info "Using yarn ${BERTH_YARN_VERSION:-}"; else info "Installed yarn ${BERTH_YARN_VERSION:-}"; fi
  if [ "$YARN_BERRY" = true ] && [ -n "$YARN_PATH" ]; then
    info "Yarn commands run the release vendored at $YARN_PATH (yarnPath in .yarnrc.yml)"
  fi
}

install_pnpm() {
  local dest="$BUILD_DIR/.heroku/pnpm"
  if [ -z "$BERTH_PNPM_DIR" ] || [ ! -f "$BERTH_PNPM_DIR/bin/pnpm.cjs" ]; then
    fail "This buildpack runs only in Berth's builder, which provides pnpm (BERTH_PNPM_DIR has no bin/pnpm.cjs)."
  fi
  copy_tree "$BERTH_PNPM_DIR" "$dest"
  ln -sfn pnpm.cjs "$dest/bin/pnpm"
  chmod +x "$dest/bin/pnpm.cjs"
  if [ -f "$dest/bin/pnpx.cjs" ]; then ln -sfn pnpx.cjs "$dest/bin/pnpx"; chmod +x "$dest/bin/pnpx.cjs"; fi
  info "Using pnpm ${BERTH_PNPM_VERSION:-}"
}

# The operator's registry (BERTH_NPM_REGISTRY, e.g. a mirror) unless the app names its own.
configure_registry() {
  [ -n "$BERTH_NPM_REGISTRY" ] || return 0
  if [ -n "${NPM_CONFIG_REGISTRY}${npm_config_registry}${YARN_REGISTRY}${YARN_NPM_REGISTRY_SERVER}" ] ||
     grep -qsE '^[[:space:]]*registry[[:space:]]*=' "$BUILD_DIR/.npmrc" ||
     grep -qsE '^[[:space:]]*registry[[:space:]]' "$BUILD_DIR/.yarnrc" ||
     grep -qsE '^npmRegistryServer:' "$BUILD_DIR/.yarnrc.yml"; then
    return 0
  fi
  export npm_config_registry="$BERTH_NPM_REGISTRY"
  # Berry stops at a YARN_* setting it does not know, so each Yarn gets only its own name.
  if [ "$PM" = yarn ] && [ "$YARN_BERRY" = true ]; then export YARN_NPM_REGISTRY_SERVER="$BERTH_NPM_REGISTRY"
  elif [ "$PM" = yarn ]; then export YARN_REGISTRY="$BERTH_NPM_REGISTRY"; fi
  info "Using the platform's npm registry: $BERTH_NPM_REGISTRY"
}

# What a dyno's shell sources before the app starts (Heroku's .profile.d/nodejs.sh, plus
# WEB_CONCURRENCY from the dyno's memory limit as Heroku computes it).
write_profile() {
  mkdir -p "$BUILD_DIR/.profile.d"
  cat > "$BUILD_DIR/.profile.d/nodejs.sh" <<'PROFILE'
export PATH="$HOME/.heroku/node/bin:$HOME/.heroku/yarn/bin:$HOME/.heroku/pnpm/bin:$PATH:$HOME/bin:$HOME/node_modules/.bin"
export NODE_HOME="$HOME/.heroku/node"
export NODE_ENV="${NODE_ENV:-production}"
PROFILE
  cat > "$BUILD_DIR/.profile.d/WEB_CONCURRENCY.sh" <<'PROFILE'
# Cluster-aware servers (throng, PM2, node:cluster) read WEB_CONCURRENCY: one process per
# WEB_MEMORY MB (512; 2048 past 16 GB) of the dyno's memory limit, between 1 and 200.
berth_memory_mb() {
  local path limit
  path="$(sed -n 's/^[0-9]*:memory:\(.*\)$/\1/p' /proc/self/cgroup 2>/dev/null | head -n 1)"
  for limit in "/sys/fs/cgroup/memory${path}/memory.limit_in_bytes" /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max; do
    if [ -r "$limit" ] && [ "$(cat "$limit")" -gt 0 ] 2>/dev/null; then
      echo $(( $(cat "$limit") / 1048576 )); return
    fi
  done
  echo 512
}
export MEMORY_AVAILABLE="${MEMORY_AVAILABLE:-$(berth_memory_mb)}"
if [ "$MEMORY_AVAILABLE" -gt 129024 ] 2>/dev/null; then MEMORY_AVAILABLE=512; fi
if [ "$MEMORY_AVAILABLE" -gt 16384 ]; then export WEB_MEMORY="${WEB_MEMORY:-2048}"; else export WEB_MEMORY="${WEB_MEMORY:-512}"; fi
if [ -z "$WEB_CONCURRENCY" ]; then
  WEB_CONCURRENCY=$(( MEMORY_AVAILABLE / WEB_MEMORY ))
  if [ "$WEB_CONCURRENCY" -lt 1 ] || [ "$WEB_CONCURRENCY" -gt 200 ]; then WEB_CONCURRENCY=1; fi
  export WEB_CONCURRENCY WEB_CONCURRENCY_SET_BY=heroku/nodejs
fi
unset -f berth_memory_mb
PROFILE
  # pnpm 11 re-checks node_modules before `pnpm run` against the absolute paths of the build;
  # at runtime a mismatch should warn, not reinstall (Heroku's default too).
  if [ "$PM" = pnpm ] && [ "${BERTH_PNPM_VERSION%%.*}" -ge 11 ] 2>/dev/null; then
    echo 'export pnpm_config_verify_deps_before_run="${pnpm_config_verify_deps_before_run:-warn}"' > "$BUILD_DIR/.profile.d/pnpm.sh"
  fi
  return 0
}

# Node's headers (include/, 67 MB) serve node-gyp during the build only, and share/ holds man
# pages (never copied here): Berth leaves both out of the slug, which makes every slug ~67 MB smaller to store,
# replicate and unpack (Heroku keeps them).
slim_runtime() {
  rm -rf "$BUILD_DIR/.heroku/node/include" "$BUILD_DIR/.heroku/node/share"
}

warn_no_start() {
  if [ ! -e "$BUILD_DIR/Procfile" ] && [ -z "$PJ_SCRIPT_START" ] && [ ! -e "$BUILD_DIR/server.js" ]; then
    warning "This app has no way to start: no Procfile, no \"start\" script in package.json and no server.js." \
      "Add a Procfile (web: node index.js) or a \"start\" script, or the app gets no web process."
  fi
  return 0
}
