# Shared by Berth's built-in buildpacks (sourced, never run).
indent() { sed -u 's/^/       /'; }
topic() { echo "-----> $*"; }
warn() { echo " !     $*"; }

# Heroku's ENV_DIR semantics: one file per config var; buildpacks decide what to export, and these
# never are, since they would break the build environment itself.
export_env_dir() {
  local env_dir="$1" key
  [ -d "$env_dir" ] || return 0
  for f in "$env_dir"/*; do
    [ -f "$f" ] || continue
    key="$(basename "$f")"
    case "$key" in PATH|GIT_DIR|CPATH|CPPATH|LD_PRELOAD|LIBRARY_PATH|LD_LIBRARY_PATH|HOME) ;; *) export "$key=$(cat "$f")" ;; esac
  done
}
