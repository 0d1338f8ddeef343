# Shared by Berth's built-in buildpacks (sourced, never run).
indent() { sed -u 's/^/       /'; }
topic() { echo "-----> $*"; }
warn() { echo " !     $*"; }

# Heroku's ENV_DIR semantics: one file per config var; buildpacks decide what to export. Never
# exported: what Heroku's buildpacks leave out (PATH GIT_DIR CPATH CPPATH LD_PRELOAD LIBRARY_PATH
# LANG BUILD_DIR: they would break the build environment itself), the loader and home variables
# Berth's sandbox sets (LD_LIBRARY_PATH HOME), the buildpack's own arguments and location
# (CACHE_DIR ENV_DIR BP_DIR: set before this runs), and every BERTH_* name: those are the
# platform's contract with its buildpacks (toolchain dirs, memory), which an app's config must
# not override. Nor the shell's own (IFS, BASH_*; some are read-only, and exporting one would stop
# the build).
export_env_dir() {
  local env_dir="$1" key f
  [ -d "$env_dir" ] || return 0
  for f in "$env_dir"/*; do
    [ -f "$f" ] || continue
    key="$(basename "$f")"
    case "$key" in
      PATH|GIT_DIR|CPATH|CPPATH|LD_PRELOAD|LIBRARY_PATH|LANG|BUILD_DIR|CACHE_DIR|ENV_DIR|BP_DIR|LD_LIBRARY_PATH|HOME|BERTH_*|IFS|SHELLOPTS|BASHOPTS|BASH_*|UID|EUID|PPID) ;;
      *) [[ "$key" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] && export "$key=$(cat "$f")" ;;
    esac
  done
  return 0
}
