# The app's build hooks, in Heroku's order: heroku-prebuild before the install; heroku-postbuild
# instead of build when the key is there at all (an empty one only suppresses build); and
# heroku-cleanup after pruning.

run_prebuild() {
  [ "$PJ_HAS_HEROKU_PREBUILD" = true ] || return 0
  step "Prebuild"
  run_app_script heroku-prebuild "$PJ_SCRIPT_HEROKU_PREBUILD"
}

run_build() {
  if [ "$PJ_HAS_HEROKU_POSTBUILD" = true ]; then
    if [ "$PJ_HAS_BUILD" = true ]; then info 'Detected both "build" and "heroku-postbuild" scripts'; fi
    run_app_script heroku-postbuild "$PJ_SCRIPT_HEROKU_POSTBUILD"
  elif [ "$PJ_HAS_BUILD" = true ]; then
    run_app_script build "$PJ_SCRIPT_BUILD"
  fi
  return 0
}

run_cleanup() {
  [ "$PJ_HAS_HEROKU_CLEANUP" = true ] || return 0
  step "Cleanup"
  run_app_script heroku-cleanup "$PJ_SCRIPT_HEROKU_CLEANUP"
}

# With node_modules restored from the cache the install does not run, nor with it the app's
# own install lifecycle scripts (e.g. `postinstall: prisma generate`), which may depend on app
# code rather than on dependencies: run those the package manager would have run, each once.
# `npm run install` (and Yarn 1's, and pnpm's with pre/post scripts on) runs preinstall and
# postinstall around it by itself.
run_install_lifecycle() {
  local name var names=(preinstall install postinstall prepare)
  if [ -n "$PJ_SCRIPT_INSTALL" ] && run_chains_pre_post; then names=(install prepare); fi
  for name in "${names[@]}"; do
    var="PJ_SCRIPT_${name^^}"
    if [ -n "${!var}" ]; then ensure_node_headers; run_app_script "$name" "${!var}"; fi
  done
  return 0
}

# Whether `<pm> run X` also runs preX and postX: npm and Yarn 1 always, Yarn 2+ never, pnpm as
# its enable-pre-post-scripts setting says (off by default before pnpm 9, on since).
run_chains_pre_post() {
  case "$PM" in
    npm) return 0 ;;
    yarn) [ "$YARN_BERRY" = false ] ;;
    pnpm)
      case "$(cd "$BUILD_DIR" && pnpm config get enable-pre-post-scripts 2>/dev/null)" in
        true) return 0 ;;
        false) return 1 ;;
        *) version_at_least "${BERTH_PNPM_VERSION:-0}" 9.0.0 ;;
      esac
      ;;
    *) return 1 ;;
  esac
}
