# npm, Yarn 1, Yarn 2+ (Berry) and pnpm: which one, how each installs, runs a script and prunes,
# with Heroku's commands, flags and "Skipping because ..." rules.

detect_package_manager() {
  PM="${BERTH_PACKAGE_MANAGER:-}"
  if [ -z "$PM" ]; then
    if [ -f "$BUILD_DIR/yarn.lock" ]; then PM=yarn; elif [ -f "$BUILD_DIR/pnpm-lock.yaml" ]; then PM=pnpm; else PM=npm; fi
  fi
  YARN_BERRY=false
  # A Berry lockfile has a __metadata block; Yarn 1 can still run it through a vendored yarnPath.
  if [ "$PM" = yarn ] && { [ "$BERTH_YARN_BERRY" = true ] || grep -qs '^__metadata:' "$BUILD_DIR/yarn.lock"; }; then YARN_BERRY=true; fi
  PREBUILD=false
  if [ -e "$BUILD_DIR/node_modules" ]; then PREBUILD=true; fi
  YARN_PATH="$(yarnrc_value yarnPath)"
  YARN_LINKER="$(yarnrc_value nodeLinker)"
  YARN_ZERO_INSTALL=false
  if [ "$YARN_BERRY" = true ] && [ -d "$BUILD_DIR/.yarn/cache" ] && [ -n "$(ls -A "$BUILD_DIR/.yarn/cache")" ]; then YARN_ZERO_INSTALL=true; fi
}

# yarnrc_value KEY — a top-level scalar of .yarnrc.yml (enough for yarnPath and nodeLinker).
yarnrc_value() {
  [ -f "$BUILD_DIR/.yarnrc.yml" ] || return 0
  sed -n -E "s/^$1:[[:space:]]*[\"']?([^\"'#]*[^\"'#[:space:]])[\"']?[[:space:]]*(#.*)?\$/\\1/p" "$BUILD_DIR/.yarnrc.yml" | head -n 1
}

# Yarn 2+ through Yarn 1 needs the release the app vendors (Heroku's checks, our words).
check_yarn_berry() {
  [ "$YARN_BERRY" = true ] || return 0
  if [ -n "$YARN_PRODUCTION" ]; then
    fail "YARN_PRODUCTION is set, but Yarn 2+ refuses to start with it." \
      "Unset it (config:unset YARN_PRODUCTION); to keep devDependencies after the build set YARN2_SKIP_PRUNING=true instead."
  fi
  if [ -f "$BUILD_DIR/.npmrc" ]; then warning "This app's .npmrc is not used: Yarn 2+ reads its settings from .yarnrc.yml."; fi
  if [ -f "$BUILD_DIR/.yarnrc" ]; then warning "This app's .yarnrc is not used: Yarn 2+ reads its settings from .yarnrc.yml."; fi
  if [ "${BERTH_YARN_VERSION%%.*}" = 1 ]; then
    if [ ! -f "$BUILD_DIR/.yarnrc.yml" ] || [ -z "$YARN_PATH" ]; then
      fail "yarn.lock is a Yarn 2+ lockfile, but there is no Yarn 2+ to run it: no yarnPath in .yarnrc.yml." \
        "Name the version in package.json (\"packageManager\": \"yarn@4.x.y\"), or run \`yarn set version berry\` and commit .yarnrc.yml and .yarn/releases."
    fi
  fi
  if [ -n "$YARN_PATH" ] && [ ! -f "$BUILD_DIR/$YARN_PATH" ]; then
    fail "Yarn's release $YARN_PATH (yarnPath in .yarnrc.yml) is not in the repository." \
      "Commit the .yarn/releases directory (check .gitignore), or remove yarnPath and name the version in \"packageManager\"."
  fi
}

use_npm_ci() {
  if [ -n "$USE_NPM_INSTALL" ]; then [ "$USE_NPM_INSTALL" = false ]; return; fi
  [ -f "$BUILD_DIR/package-lock.json" ] || [ -f "$BUILD_DIR/npm-shrinkwrap.json" ]
}

# The app has a lockfile for its package manager (what pins every version).
has_lockfile() {
  case "$PM" in
    npm) [ -f "$BUILD_DIR/package-lock.json" ] || [ -f "$BUILD_DIR/npm-shrinkwrap.json" ] ;;
    yarn) [ -f "$BUILD_DIR/yarn.lock" ] ;;
    pnpm) [ -f "$BUILD_DIR/pnpm-lock.yaml" ] ;;
    *) return 1 ;;
  esac
}

# npm's flag for "devDependencies too, unless NPM_CONFIG_PRODUCTION=true". npm 6 (Node <= 14's
# default) knows no --include/--omit and, with NODE_ENV=production, leaves devDependencies out
# unless told --production=false (Heroku's flag for every npm).
npm_dev_flag() {
  local production="${NPM_CONFIG_PRODUCTION:-false}" version="${BERTH_NPM_VERSION:-}"
  if [ -z "$version" ]; then version="$(npm --version 2>/dev/null || true)"; fi
  if [ -n "$version" ] && ! version_at_least "$version" 7.0.0; then
    if [ "$production" = true ]; then echo --production=true; else echo --production=false; fi
  elif [ "$production" = true ]; then
    echo --omit=dev
  else
    echo --include=dev
  fi
}

install_dependencies() {
  cd "$BUILD_DIR"
  ensure_node_headers
  case "$PM" in
    npm) npm_install ;;
    yarn) if [ "$YARN_BERRY" = true ]; then berry_install; else yarn_install; fi ;;
    pnpm) pnpm_install ;;
  esac
}

npm_install() {
  local args=(--userconfig "$BUILD_DIR/.npmrc" "$(npm_dev_flag)")
  if [ "$PREBUILD" = true ]; then
    info "Prebuild detected (node_modules already exists)"
    info "Rebuilding any native modules"
    run_logged install "npm rebuild" npm rebuild
    info "Installing any new modules (package.json)"
    run_logged install "npm install" npm install "${args[@]}"
  elif use_npm_ci; then
    info "Installing node modules"
    run_logged install "npm ci" npm ci "${args[@]}"
  else
    if [ -f package-lock.json ]; then info "Installing node modules (package.json + package-lock)"
    elif [ -f npm-shrinkwrap.json ]; then info "Installing node modules (package.json + shrinkwrap)"
    else info "Installing node modules (package.json)"; fi
    run_logged install "npm install" npm install "${args[@]}"
  fi
}

yarn_install() {
  info "Installing node modules (yarn.lock)"
  local args=(--production="${YARN_PRODUCTION:-false}" --frozen-lockfile --ignore-engines)
  # From the package cache only with a lockfile to pin versions (see npm_config_prefer_offline).
  if has_lockfile; then args+=(--prefer-offline); fi
  run_logged install "yarn install" yarn install "${args[@]}"
}

berry_install() {
  local args=(--immutable)
  # A checked-in cache (zero-install) must be exactly what the lockfile names.
  if [ "$YARN_ZERO_INSTALL" = true ]; then args+=(--immutable-cache); fi
  info "Running 'yarn install' with yarn.lock"
  run_logged install "yarn install" yarn install "${args[@]}"
}

pnpm_install() {
  info "Running 'pnpm install' with pnpm-lock.yaml"
  run_logged install "pnpm install" pnpm install --prod=false --frozen-lockfile
}

script_command() { echo "$PM run $1"; }

# run_app_script NAME BODY — an app script through the app's own package manager.
run_app_script() {
  local name="$1" body="$2"
  if [ -z "$body" ]; then
    info "Running $name (empty: nothing to run)"
    return 0
  fi
  cd "$BUILD_DIR"
  case "$PM" in
    npm) info "Running $name"; run_logged script "$name" npm run "$name" ;;
    yarn) info "Running $name (yarn)"; run_logged script "$name" yarn run "$name" ;;
    pnpm) info "Running $name"; run_logged script "$name" pnpm run "$name" ;;
  esac
}

prune_devdependencies() {
  cd "$BUILD_DIR"
  if [ "$NODE_ENV" = test ]; then info "Skipping because NODE_ENV is 'test'"; return 0; fi
  if [ "$NODE_ENV" != production ]; then info "Skipping because NODE_ENV is not 'production'"; return 0; fi
  case "$PM" in
    npm)
      if [ -n "$NPM_CONFIG_PRODUCTION" ]; then info "Skipping because NPM_CONFIG_PRODUCTION is '$NPM_CONFIG_PRODUCTION'"; return 0; fi
      run_logged install "npm prune" npm prune --omit=dev --userconfig "$BUILD_DIR/.npmrc"
      ;;
    yarn)
      if [ -n "$YARN_PRODUCTION" ]; then info "Skipping because YARN_PRODUCTION is '$YARN_PRODUCTION'"; return 0; fi
      if [ "$YARN_BERRY" = true ]; then berry_prune; return; fi
      # With NODE_ENV=production Yarn 1 installs dependencies only: the same tree, minus dev.
      run_logged install "yarn install" yarn install --frozen-lockfile --ignore-engines --ignore-scripts --prefer-offline
      ;;
    pnpm) pnpm_prune ;;
  esac
}

berry_prune() {
  if [ "$YARN2_SKIP_PRUNING" = true ]; then info "Skipping because YARN2_SKIP_PRUNING is '$YARN2_SKIP_PRUNING'"; return 0; fi
  # `workspaces focus` is built into Yarn 4; Yarn 2 and 3 have it from the workspace-tools plugin.
  if ! yarn workspaces focus --help >/dev/null 2>&1; then
    info "Skipping because 'yarn workspaces focus' is not available (Yarn 2/3: \`yarn plugin import workspace-tools\`)"
    return 0
  fi
  info "Running 'yarn workspaces focus --all --production'"
  run_logged install "yarn workspaces focus" yarn workspaces focus --all --production
  if [ "$YARN_LINKER" = node-modules ] && [ -d "$BUILD_DIR/.yarn/cache" ]; then
    info "Removing local yarn cache to reduce slug size"
    rm -rf "$BUILD_DIR/.yarn/cache"
  fi
}

pnpm_prune() {
  if [ "$PNPM_SKIP_PRUNING" = true ]; then info "Skipping because PNPM_SKIP_PRUNING is '$PNPM_SKIP_PRUNING'"; return 0; fi
  local lifecycle='pnpm:devPreinstall|preinstall|install|postinstall|prepare'
  if [ -f pnpm-workspace.yaml ] && grep -q '^packages:' pnpm-workspace.yaml; then
    # Pruning a workspace reinstalls it (production only), which runs lifecycle scripts again.
    local projects project
    projects="$(pnpm list --recursive --json --depth -1 2>/dev/null | NODE_OPTIONS= node -e '
      let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
        try { for (const p of JSON.parse(s)) if (p && typeof p.path === "string") console.log(p.path); } catch {}
      });')"
    while IFS= read -r project; do
      [ -n "$project" ] || continue
      if has_lifecycle_script "$project/package.json" "$lifecycle"; then
        warning "Pruning skipped: $project/package.json has lifecycle scripts ($lifecycle)," \
          "which pnpm would run again while reinstalling production dependencies."
        return 0
      fi
    done <<< "$projects"
    while IFS= read -r project; do [ -n "$project" ] && rm -rf "$project/node_modules"; done <<< "$projects"
    run_logged install "pnpm install --prod" pnpm install --prod --frozen-lockfile
    return
  fi
  local args=(prune --prod)
  if version_at_least "${BERTH_PNPM_VERSION:-0}" 8.15.6; then
    args+=(--ignore-scripts)
  elif has_lifecycle_script "$BUILD_DIR/package.json" "$lifecycle"; then
    warning "Pruning skipped: pnpm ${BERTH_PNPM_VERSION} runs package.json's lifecycle scripts while pruning." \
      "Use pnpm 8.15.6 or later (\"packageManager\": \"pnpm@<version>\") to prune safely."
    return 0
  fi
  run_logged install "pnpm prune" pnpm "${args[@]}"
}

has_lifecycle_script() {
  [ -f "$1" ] && NODE_OPTIONS= node -e '
    const s = (JSON.parse(require("fs").readFileSync(process.argv[1], "utf8").replace(/^\uFEFF/, "")) || {}).scripts || {};
    process.exit(process.argv[2].split("|").some((k) => Object.prototype.hasOwnProperty.call(s, k)) ? 0 : 1);
  ' "$1" "$2" 2>/dev/null
}

# version_at_least A B — A >= B for dotted numeric versions.
version_at_least() {
  [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1)" = "$2" ]
}
