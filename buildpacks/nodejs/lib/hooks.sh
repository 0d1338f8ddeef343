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
