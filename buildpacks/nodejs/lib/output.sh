# Output in Heroku's shape (steps, info lines indented 7 spaces, ` !     ` warnings and failures),
# and run_logged: the one wrapper every install, prune and app script runs through, so each
# failure is explained once, in words a person can act on (lib/failures.sh).

step() { echo ""; echo "-----> $*"; }
info() { echo "       $*"; }

# bang_lines LINE... — each line in the ` !     ` margin (an empty one as a bare ` !`).
bang_lines() {
  local line
  for line in "$@"; do
    if [ -n "$line" ]; then echo " !     $line"; else echo " !"; fi
  done
}

# warning LINE... — a block of ` !     ` lines set off by blank lines (Heroku prints its
# warnings the same way; here on stdout, so they stay in order with the rest of the log).
warning() {
  echo ""
  bang_lines "$@"
  echo ""
}

# fail TITLE FIX... — the build stops here: one title line, then how to fix it.
fail() {
  local title="$1"; shift
  echo ""
  bang_lines "$title"
  if [ $# -gt 0 ]; then bang_lines "" "$@"; fi
  echo ""
  exit 1
}

# npm prints its whole usage text after an EUSAGE error (e.g. a lockfile out of sync): keep the
# explanation it gives, drop the option list and the path to a debug log the user cannot read.
# Streams line by line; only an EUSAGE error is held back, until npm exits.
filter_tool_output() {
  # mawk (Debian's awk) fills its input buffer before it prints a line: without -W interactive a
  # script's output would reach the pusher only when it ends, or never if the build is stopped.
  local interactive=()
  if awk -W version 2>&1 | grep -q mawk; then interactive=(-W interactive); fi
  awk "${interactive[@]}" '
    /^npm (error|ERR!) A complete log of this run/ { next }
    /^npm (error|ERR!) code EUSAGE/ { hold = 1 }
    hold {
      if (dropping) next
      buf[++n] = $0
      if ($0 ~ /^npm (error|ERR!) Usage:/) { n -= 4; dropping = 1 }
      next
    }
    { print; fflush() }
    END { for (i = 1; i <= n; i++) print buf[i] }
  '
}

# run_logged KIND NAME COMMAND... — runs COMMAND with its output indented under the current
# step and kept in a log under /tmp; on failure explains it (classify_failure) and exits 1.
# KIND is `install` (installs and prunes: NAME is the command, e.g. "npm ci") or `script`
# (an app script: NAME is the script's name).
run_logged() {
  local kind="$1" name="$2"; shift 2
  local log
  log="$(mktemp "$LOG_DIR/run.XXXXXX")"
  if ! { "$@" 2>&1 | tee "$log" | filter_tool_output | indent; }; then
    local status=("${PIPESTATUS[@]}")
    if [ "${status[0]}" -ne 0 ]; then
      classify_failure "$kind" "$name" "${status[0]}" "$log"
    fi
    # The command worked but its log could not be written or shown (e.g. /tmp is full).
    fail "The output of $name could not be captured (pipeline status ${status[*]})." \
      "This is not a problem with the app: the build's disk may be full. Push again; if it persists, ask the operator."
  fi
}
