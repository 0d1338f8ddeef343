# Caching between builds, in $CACHE_DIR/node:
#   signature            Node, package manager and npm versions, stack: a change clears the rest
#   npm/ yarn/ pnpm-store/  the package manager's own cache, used in place (content-addressed
#                        stores survive an interrupted build, and nothing crosses the /app-/cache
#                        mount boundary, where a move is a copy)
#   modules-<key>.tar    node_modules (root and workspaces; Berry's PnP files) as they were after
#                        the build step, before pruning. <key> hashes everything an install
#                        depends on; the same key next time means the install is skipped.
#                        Also the app's .cache when the install wrote to it: install scripts
#                        download browsers to $HOME/.cache (Puppeteer, Playwright, Cypress).
#   dirs/<sha>.tar       the app's cacheDirectories (package.json)
# Every file is written under a temporary name and renamed, so a failed or killed build never
# leaves half a file where the next one would read it.

NODE_CACHE=""

signature() {
  echo "berth-nodejs v1; ${STACK}; node ${BERTH_NODE_VERSION}; npm ${BERTH_NPM_VERSION}; ${PM} ${BERTH_YARN_VERSION}${BERTH_PNPM_VERSION}; prebuild ${PREBUILD}"
}

cache_status() {
  if [ "$NODE_MODULES_CACHE" = false ]; then echo disabled
  elif [ ! -f "$NODE_CACHE/signature" ]; then echo not-found
  elif [ "$(signature)" != "$(cat "$NODE_CACHE/signature")" ]; then echo new-signature
  else echo valid; fi
}

# The app's cacheDirectories, checked: relative, inside the app, no `..`.
cache_directories() {
  local d
  while IFS= read -r d; do
    d="${d#./}"; d="${d%/}"
    case "/$d/" in */../*|*/./*|//) continue ;; esac
    case "$d" in /*|'') continue ;; esac
    echo "$d"
  done <<< "$PJ_CACHE_DIRECTORIES"
}

is_modules_path() { [ "$(basename "$1")" = node_modules ]; }

# What the modules snapshot holds: the node_modules beside each package.json of the app (root
# and workspaces: PACKAGE_DIRS, fixed just before the install, so a build that writes a
# package.json of its own, like Next.js's standalone output, adds nothing), never one pushed in
# the source (SOURCE_MODULES), and Yarn PnP's files.
snapshot_paths() {
  (
    cd "$BUILD_DIR" || exit 0
    { if [ -n "$PACKAGE_DIRS" ]; then printf '%s\n' "$PACKAGE_DIRS"; else package_dirs; fi; } | while IFS= read -r d; do
      [ -n "$d" ] || continue
      p="${d#./}node_modules"
      [ -d "$p" ] || continue
      case "$SOURCE_MODULES" in *"|$p|"*) continue ;; esac
      echo "$p"
    done
    if [ "$YARN_BERRY" = true ]; then
      for p in .pnp.cjs .pnp.js .pnp.loader.mjs .pnp.data.json .yarn/unplugged .yarn/install-state.gz; do [ -e "$p" ] && echo "$p"; done
      # PnP keeps its packages' zips in the app: part of what the install produced, unless checked in.
      if [ "$YARN_ZERO_INSTALL" = false ] && [ "$YARN_CACHE_FOLDER" = "$BUILD_DIR/.yarn/cache" ] && [ -d .yarn/cache ]; then echo .yarn/cache; fi
    fi
  ) | LC_ALL=C sort
}

# Directories holding a package.json of the app, each ending in / ("./" for the root).
package_dirs() {
  (cd "$BUILD_DIR" && find . \( -path ./.heroku -o -path ./.git -o -path ./.cache -o -name node_modules \) -prune -o -type f -name package.json -print 2>/dev/null) |
    sed -e 's|package\.json$||' | LC_ALL=C sort
}

# node_modules directories pushed in the source (below the root too): the app's, never cached
# over or removed. Called before anything is restored.
note_source_modules() {
  SOURCE_MODULES="|$(cd "$BUILD_DIR" && find . \( -path ./.heroku -o -path ./.git \) -prune -o -type d -name node_modules -print -prune 2>/dev/null | sed 's|^\./||' | tr '\n' '|')"
}

# Whether any package of the app has install lifecycle scripts. Their results can depend on
# more than the lockfile (patch-package's patches, prisma's schema, a workspace's sources), so
# such an app installs on every push, from the warm package cache, rather than reusing a snapshot.
has_install_scripts() {
  (cd "$BUILD_DIR" && find . \( -path ./.heroku -o -path ./.git -o -path ./.cache -o -name node_modules \) -prune -o -type f -name package.json -print0 2>/dev/null) |
    NODE_OPTIONS='' "$BERTH_NODE_DIR/bin/node" -e '
      const fs = require("fs");
      for (const f of fs.readFileSync(0, "utf8").split("\0").filter(Boolean)) {
        let scripts;
        try { scripts = (JSON.parse(fs.readFileSync(process.argv[1] + "/" + f, "utf8").replace(/^\uFEFF/, "")) || {}).scripts || {}; } catch { continue; }
        if (["preinstall", "install", "postinstall", "prepare"].some((k) => typeof scripts[k] === "string" && scripts[k].trim() !== "")) process.exit(0);
      }
      process.exit(1);' "$BUILD_DIR"
}

# Everything an install's result depends on. App code is not in it: a push that changes only
# code restores node_modules and skips the install.
modules_key() {
  {
    signature
    echo "pm $PM berry $YARN_BERRY registry ${BERTH_NPM_REGISTRY}"
    printf '%s\n' "$KEY_ENV"
    cd "$BUILD_DIR" && find . \( -path ./.heroku -o -path ./.git -o -path ./.yarn/cache -o -path ./.cache -o -name node_modules \) -prune -o -type f \
      \( -name package.json -o -name package-lock.json -o -name npm-shrinkwrap.json -o -name yarn.lock -o -name pnpm-lock.yaml \
         -o -name .npmrc -o -name .yarnrc -o -name .yarnrc.yml -o -name pnpm-workspace.yaml -o -name .pnpmfile.cjs \) -print0 2>/dev/null |
      LC_ALL=C sort -z | xargs -0 -r sha256sum
  } | sha256sum | cut -c1-32
}

# config_fingerprint ENV_DIR — every config var's name and a hash of its value: install scripts
# read settings of their own (PUPPETEER_SKIP_DOWNLOAD, SHARP_*, PRISMA_*, CYPRESS_INSTALL_BINARY).
# After a config change the install runs again, from the warm package cache.
config_fingerprint() {
  local f
  [ -d "$1" ] || return 0
  for f in "$1"/*; do
    [ -f "$f" ] || continue
    echo "config $(basename "$f") $(sha256sum < "$f" | cut -c1-64)"
  done
}

# $BUILD_DIR/.cache is the app's $HOME/.cache at run time. It goes into the snapshot when the
# install created or changed it (compared before and after), so a push that skips the install
# still ships what install scripts downloaded there.
dot_cache_state() {
  if [ -e "$BUILD_DIR/.cache" ] || [ -L "$BUILD_DIR/.cache" ]; then
    find "$BUILD_DIR/.cache" -printf '%P %y %s %T@\n' 2>/dev/null | LC_ALL=C sort | sha256sum | cut -c1-32
  else
    echo absent
  fi
}
note_dot_cache() { DOT_CACHE_BEFORE="$(dot_cache_state)"; }
check_dot_cache() {
  if [ "$(dot_cache_state)" != "$DOT_CACHE_BEFORE" ]; then SNAPSHOT_DOT_CACHE=true; fi
  return 0
}

# Where the package managers keep their downloads (after restore_cache, which may clear them).
setup_package_caches() {
  local base="$NODE_CACHE"
  if [ "$CACHE_STATUS" = disabled ]; then base="$(mktemp -d "$LOG_DIR/pmcache.XXXXXX")"; fi
  mkdir -p "$base"
  export NPM_CONFIG_CACHE="${NPM_CONFIG_CACHE:-$base/npm}"
  if [ "$YARN_BERRY" = true ]; then
    # Berry 4 defaults to a global cache outside the app; PnP needs the zips in the slug, and
    # node-modules installs want them in Berth's cache: both need the local cache folder.
    export YARN_ENABLE_GLOBAL_CACHE=false YARN_ENABLE_TELEMETRY="${YARN_ENABLE_TELEMETRY:-false}"
    # HOME is /app: Berry's global folder (and the mirror it keeps there of every package, dev
    # ones included) would otherwise end up in the slug. (Turning the mirror off instead makes
    # an --immutable-cache install miss entries of a checked-in cache.)
    export YARN_GLOBAL_FOLDER="${YARN_GLOBAL_FOLDER:-$LOG_DIR/yarn-global}"
    if [ "$YARN_ZERO_INSTALL" = true ] || [ "$YARN_LINKER" != node-modules ]; then
      export YARN_CACHE_FOLDER="${YARN_CACHE_FOLDER:-$BUILD_DIR/.yarn/cache}"
    else
      export YARN_CACHE_FOLDER="${YARN_CACHE_FOLDER:-$base/yarn}"
    fi
  else
    export YARN_CACHE_FOLDER="${YARN_CACHE_FOLDER:-$base/yarn}"
  fi
  # pnpm 11 reads pnpm_config_*, older releases npm_config_*.
  export npm_config_store_dir="${npm_config_store_dir:-$base/pnpm-store}" pnpm_config_store_dir="${pnpm_config_store_dir:-$base/pnpm-store}"
}

package_cache_name() {
  case "$PM" in npm) echo "npm cache" ;; yarn) echo "yarn cache" ;; pnpm) echo "pnpm cache" ;; esac
}

package_cache_dir() {
  case "$PM" in npm) echo "$NODE_CACHE/npm" ;; yarn) echo "$NODE_CACHE/yarn" ;; pnpm) echo "$NODE_CACHE/pnpm-store" ;; esac
}

restore_cache() {
  NODE_CACHE="$CACHE_DIR/node"
  mkdir -p "$NODE_CACHE"
  rm -f "$NODE_CACHE"/.*.partial "$NODE_CACHE"/dirs/.*.partial 2>/dev/null || true
  CACHE_STATUS="$(cache_status)"
  SNAPSHOT_HIT=false
  SNAPSHOT_USABLE=false
  SNAPSHOT_RESTORED=""
  MODULES_KEY=""
  # Whether .cache belongs to the snapshot (SNAPSHOT_DOT_CACHE), and whether this build's came
  # from it rather than from the app's source (SNAPSHOT_RESTORED_DOT_CACHE).
  SNAPSHOT_DOT_CACHE=false
  SNAPSHOT_RESTORED_DOT_CACHE=false
  DOT_CACHE_BEFORE=""
  local dirs
  dirs="$(cache_directories)"
  if [ "$PM" = yarn ] && [ "$PREBUILD" = true ]; then
    if [ "$SKIP_NODE_MODULES_CHECK" = true ]; then
      info "Keeping existing node_modules because SKIP_NODE_MODULES_CHECK=true"
    else
      warning "node_modules is checked into source control: it is removed and installed from yarn.lock." \
        "Add node_modules to .gitignore."
      rm -rf "$BUILD_DIR/node_modules"
      PREBUILD=false
    fi
  fi
  case "$CACHE_STATUS" in
    disabled)
      step "Restoring cache"
      info "Caching has been disabled because NODE_MODULES_CACHE=${NODE_MODULES_CACHE}"
      ;;
    new-signature)
      step "Restoring cache"
      if [ -z "$dirs" ]; then
        info "Cached directories were not restored due to a change in version of node, npm, yarn or stack"
        info "Module installation may take longer for this build"
      else
        info "Invalidating cache due to a change in version of node, npm, yarn or stack"
        info "Will not restore the following directories for this build:"
        printf '%s\n' "$dirs" | sed 's/^/         /'
      fi
      # A cache written by other versions is of no use to this build (and native modules in
      # node_modules were built for another Node): start over.
      find "$NODE_CACHE" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
      ;;
    valid)
      step "Restoring cache"
      restore_package_cache
      if [ "$PREBUILD" = false ]; then SNAPSHOT_USABLE=true; restore_snapshot; fi
      if [ -n "$dirs" ]; then restore_custom_directories "$dirs"; fi
      ;;
    not-found) ;;
  esac
}

restore_package_cache() {
  if [ "$YARN_BERRY" = true ] && [ "$YARN_ZERO_INSTALL" = true ]; then
    info "- yarn cache is checked into source control and cannot be cached"
  elif [ -d "$(package_cache_dir)" ]; then
    info "- $(package_cache_name)"
  else
    info "- $(package_cache_name) (not cached - skipping)"
  fi
}

restore_snapshot() {
  MODULES_KEY="$(modules_key)"
  local tarball="$NODE_CACHE/modules-$MODULES_KEY.tar"
  local had_dot_cache=false
  if [ -e "$BUILD_DIR/.cache" ] || [ -L "$BUILD_DIR/.cache" ]; then had_dot_cache=true; fi
  if [ "$YARN_BERRY" = true ] && [ "$YARN_ZERO_INSTALL" = true ]; then
    # The checked-in cache is the app's code: Yarn must check it against the lockfile
    # (--immutable-cache) on every push, and with nothing to fetch that install is quick.
    info "- install state (the yarn cache is checked in: Yarn checks it on every build)"
  elif [ -f "$tarball" ]; then
    if tar -xf "$tarball" -C "$BUILD_DIR" 2>/dev/null; then
      SNAPSHOT_HIT=true
      SNAPSHOT_RESTORED="$(snapshot_paths)"
      if [ "$had_dot_cache" = false ] && [ -e "$BUILD_DIR/.cache" ]; then SNAPSHOT_RESTORED_DOT_CACHE=true; SNAPSHOT_DOT_CACHE=true; fi
      info "- node_modules (dependencies unchanged since the last build)"
      return
    fi
    # Unreadable: drop it and whatever it half-extracted, and install as if it were not there.
    rm -f "$tarball"
    snapshot_paths | while IFS= read -r p; do rm -rf "${BUILD_DIR:?}/$p"; done
    if [ "$had_dot_cache" = false ]; then rm -rf "${BUILD_DIR:?}/.cache"; fi
    info "- node_modules (the cached copy could not be read - skipping)"
  elif compgen -G "$NODE_CACHE/modules-*.tar" >/dev/null; then
    # The old snapshot can never match again: its space goes back to the build's disk now.
    rm -f "$NODE_CACHE"/modules-*.tar
    info "- node_modules (dependencies changed - skipping)"
  else
    info "- node_modules (not cached - skipping)"
  fi
}

restore_custom_directories() {
  local p
  info "Loading from cacheDirectories (package.json):"
  while IFS= read -r p; do
    if is_modules_path "$p"; then
      if [ "$SNAPSHOT_HIT" = true ] && [ -d "$BUILD_DIR/$p" ]; then info "- $p"; else info "- $p (not cached - skipping)"; fi
    elif [ -e "$BUILD_DIR/$p" ]; then
      info "- $p (exists - skipping)"
    elif [ -f "$NODE_CACHE/dirs/$(dir_id "$p").tar" ] && tar -xf "$NODE_CACHE/dirs/$(dir_id "$p").tar" -C "$BUILD_DIR" 2>/dev/null; then
      info "- $p"
    else
      info "- $p (not cached - skipping)"
    fi
  done <<< "$1"
}

dir_id() { printf '%s' "$1" | sha256sum | cut -c1-32; }

# Called just before the install: true when node_modules came back from the cache and nothing
# an install depends on changed since (heroku-prebuild may have edited package.json).
snapshot_still_valid() {
  # What the install depends on, fixed now (after heroku-prebuild): the snapshot is saved under
  # this key and holds these directories' node_modules, whatever the build writes later.
  INSTALL_KEY="$(modules_key)"
  PACKAGE_DIRS="$(package_dirs)"
  [ "$SNAPSHOT_HIT" = true ] || return 1
  local why="" p
  if [ "$INSTALL_KEY" != "$MODULES_KEY" ]; then why="heroku-prebuild changed what the install depends on"
  elif has_install_scripts; then why="the app's packages have install scripts, which run on every install"
  else
    # heroku-prebuild may have removed what came back (rm -rf node_modules).
    while IFS= read -r p; do
      if [ -n "$p" ] && [ ! -e "$BUILD_DIR/$p" ]; then why="$p is gone"; break; fi
    done <<< "$SNAPSHOT_RESTORED"
  fi
  [ -n "$why" ] || return 0
  info "Installing again: $why (from the warm package cache)"
  while IFS= read -r p; do [ -n "$p" ] && rm -rf "${BUILD_DIR:?}/$p"; done <<< "$SNAPSHOT_RESTORED"
  # The install then starts from the app's own .cache, and what it writes there is seen as new.
  if [ "$SNAPSHOT_RESTORED_DOT_CACHE" = true ]; then rm -rf "${BUILD_DIR:?}/.cache"; fi
  SNAPSHOT_HIT=false
  SNAPSHOT_DOT_CACHE=false
  return 1
}

save_cache() {
  if [ "$CACHE_STATUS" = disabled ]; then
    # As on Heroku: with caching off, nothing of an earlier build is kept either.
    find "$NODE_CACHE" -mindepth 1 -maxdepth 1 -exec rm -rf {} + 2>/dev/null || true
    return 0
  fi
  step "Caching build"
  if [ "$YARN_BERRY" = true ] && [ "$YARN_ZERO_INSTALL" = true ]; then
    info "- yarn cache is checked into source control and cannot be cached"
  elif [ -d "$(package_cache_dir)" ]; then
    info "- $(package_cache_name)"
  else
    info "- $(package_cache_name) (nothing to cache)"
  fi
  if [ "$PREBUILD" = true ]; then
    info "- node_modules is checked into source control and cannot be cached"
  else
    save_snapshot
  fi
  local dirs
  dirs="$(cache_directories)"
  if [ -n "$dirs" ]; then save_custom_directories "$dirs"; else rm -rf "$NODE_CACHE/dirs"; fi
  signature > "$NODE_CACHE/.signature.partial" && mv -f "$NODE_CACHE/.signature.partial" "$NODE_CACHE/signature"
}

save_snapshot() {
  local key="${INSTALL_KEY:-$(modules_key)}" paths=()
  if [ "$SNAPSHOT_HIT" = true ] && [ "$key" = "$MODULES_KEY" ] && [ -f "$NODE_CACHE/modules-$key.tar" ]; then
    # Copying node_modules again would cost as much as restoring it: the copy from the build
    # that installed these dependencies stays.
    info "- node_modules (unchanged)"
    return 0
  fi
  mapfile -t paths < <(snapshot_paths)
  if [ "$SNAPSHOT_DOT_CACHE" = true ] && { [ -e "$BUILD_DIR/.cache" ] || [ -L "$BUILD_DIR/.cache" ]; }; then paths+=(.cache); fi
  if [ "${#paths[@]}" -eq 0 ]; then
    rm -f "$NODE_CACHE"/modules-*.tar
    info "- node_modules (nothing to cache)"
    return 0
  fi
  local partial="$NODE_CACHE/.modules-$key.tar.partial"
  if tar -cf "$partial" -C "$BUILD_DIR" -- "${paths[@]}" 2>"$LOG_DIR/tar.err" && mv -f "$partial" "$NODE_CACHE/modules-$key.tar"; then
    find "$NODE_CACHE" -maxdepth 1 -name 'modules-*.tar' ! -name "modules-$key.tar" -delete
    info "- node_modules"
    if [ "${paths[-1]}" = .cache ]; then info "- .cache (written while installing dependencies)"; fi
  else
    rm -f "$partial" "$NODE_CACHE"/modules-*.tar
    info "- node_modules (could not be cached: $(head -c 200 "$LOG_DIR/tar.err"))"
  fi
}

save_custom_directories() {
  local p id keep=" "
  info "Saving cacheDirectories (package.json):"
  mkdir -p "$NODE_CACHE/dirs"
  while IFS= read -r p; do
    if is_modules_path "$p"; then
      if [ -d "$BUILD_DIR/$p" ]; then info "- $p"; else info "- $p (nothing to cache)"; fi
      continue
    fi
    if [ ! -e "$BUILD_DIR/$p" ]; then info "- $p (nothing to cache)"; continue; fi
    id="$(dir_id "$p")"
    if tar -cf "$NODE_CACHE/dirs/.$id.tar.partial" -C "$BUILD_DIR" -- "$p" 2>/dev/null && mv -f "$NODE_CACHE/dirs/.$id.tar.partial" "$NODE_CACHE/dirs/$id.tar"; then
      keep+="$id.tar "
      info "- $p"
    else
      rm -f "$NODE_CACHE/dirs/.$id.tar.partial"
      info "- $p (could not be cached)"
    fi
  done <<< "$1"
  for p in "$NODE_CACHE"/dirs/*.tar; do
    [ -e "$p" ] || continue
    case "$keep" in *" $(basename "$p") "*) ;; *) rm -f "$p" ;; esac
  done
}
