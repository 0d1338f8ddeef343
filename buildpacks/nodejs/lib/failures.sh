# What a failed install or app script means, in one title line and a fix (the cases Heroku's
# Node.js buildpack recognises, matched on the same tool messages; Berry's and pnpm's codes too).

# first_match FILE SED_EXPR — the first line of FILE that SED_EXPR (with -n and p) prints.
first_match() { sed -n -E "$2" "$1" | head -n 1; }

# classify_failure KIND NAME EXIT LOG — prints the explanation and exits 1.
classify_failure() {
  local kind="$1" name="$2" code="$3" log="$4" what

  # Node itself, whatever ran it: an install script or a build script.
  if grep -q 'ERR_OSSL_EVP_UNSUPPORTED' "$log"; then
    fail "A build step used a hash or cipher that OpenSSL 3 (Node 17 and later) no longer enables by default (ERR_OSSL_EVP_UNSUPPORTED)." \
      "Most often this is webpack 4 hashing with md4: on webpack 5.54+ set output.hashFunction to 'xxhash64' in" \
      "webpack.config.js; on older webpack set it to 'sha256', or upgrade webpack (or react-scripts) to a current version." \
      "Otherwise update the dependency or code that uses the old algorithm (the stack trace above names it)." \
      "Stopgap only, not for production: config:set NODE_OPTIONS=--openssl-legacy-provider, then push again."
  fi
  if grep -q 'JavaScript heap out of memory' "$log"; then
    fail "Node ran out of JavaScript heap memory in $(describe_step "$kind" "$name") (NODE_OPTIONS=${NODE_OPTIONS:-unset})." \
      "Bundlers (webpack, Vite, Rollup, Next.js) often run many workers at once: lower their parallelism or disable" \
      "memory-hungry plugins in their configuration. If the step really needs more, raise the heap limit with" \
      "config:set NODE_OPTIONS=--max-old-space-size=<MB>, staying below this build's memory (${BERTH_BUILD_MEMORY_MB:-unknown} MB)."
  fi
  if [ "$kind" = install ]; then
    classify_install_failure "$name" "$code" "$log"
    fail "$name failed (exit $code)." \
      "The output above says why. Run the same command in a clean checkout of this commit to reproduce it."
  fi
  fail "The $name script failed (exit $code)." \
    "Its output is above. Reproduce it locally with \`$(script_command "$name")\` and NODE_ENV=${NODE_ENV:-production}," \
    "fix it, and push again."
}

describe_step() { if [ "$1" = install ]; then echo "$2"; else echo "the $2 script"; fi; }

# classify_install_failure NAME EXIT LOG — returns only when nothing matched.
classify_install_failure() {
  local name="$1" log="$3" what lockfile fix
  case "$PM" in
    npm) lockfile="package-lock.json"; fix="npm install" ;;
    yarn) lockfile="yarn.lock"; fix="yarn install" ;;
    pnpm) lockfile="pnpm-lock.yaml"; fix="pnpm install" ;;
  esac

  if { grep -qE 'npm (error|ERR!) code EUSAGE' "$log" && grep -q 'Please update your lock file' "$log"; } ||
     grep -q 'Your lockfile needs to be updated' "$log" ||
     grep -q 'YN0028' "$log" ||
     grep -q 'ERR_PNPM_OUTDATED_LOCKFILE' "$log"; then
    [ -f npm-shrinkwrap.json ] && [ "$PM" = npm ] && lockfile="npm-shrinkwrap.json"
    what="$(first_match "$log" 's/^npm (error|ERR!) (Invalid|Missing): (.*)/\2: \3/p')"
    fail "$lockfile is out of sync with package.json${what:+ ($what)}." \
      "The build installs exactly what the lockfile says and will not change it. Run \`$fix\` locally," \
      "commit the updated $lockfile, and push again."
  fi

  # Yarn 2+ with a checked-in cache (--immutable-cache): an archive differs from what yarn.lock says.
  if grep -q 'YN0018' "$log"; then
    what="$(first_match "$log" 's/.*YN0018: [^A-Za-z@]*(.+): The remote archive.*/\1/p')"
    fail "The checked-in Yarn cache does not match yarn.lock${what:+ ($what)}." \
      "An archive in .yarn/cache is not the one the lockfile names (edited, or committed from another install)." \
      "Run \`yarn install\` locally, commit .yarn/cache and yarn.lock together, and push again."
  fi

  what="$(first_match "$log" "s/.*404 +(The requested resource )?'([^']+)' (is not in (this|the npm) registry|could not be found).*/\2/p")"
  [ -z "$what" ] && what="$(first_match "$log" 's/.*error An unexpected error occurred: "[^"]*\/([^/"]+): Not found".*/\1/p')"
  [ -z "$what" ] && what="$(first_match "$log" 's/.*YN0035: [^[:alnum:]@]*([^ ]+): Package not found.*/\1/p')"
  [ -z "$what" ] && what="$(first_match "$log" 's/.*ERR_PNPM_FETCH_404 +GET [^ ]*\/([^/ ]+): Not Found.*/\1/p')"
  if [ -n "$what" ] || grep -qE 'npm (error|ERR!) code E404|Request failed "404 Not Found"|ERR_PNPM_FETCH_404|YN0035' "$log"; then
    fail "A dependency is not in the registry: ${what:-see the 404 above}." \
      "Check its name in package.json (a typo, or a package that was unpublished). If it is a private package," \
      "point the build at its registry: a registry= line (and token) in .npmrc, or NPM_CONFIG_REGISTRY."
  fi

  what="$(first_match "$log" 's/.*No matching version found for ([^ ]+)\.?$/\1/p')"
  [ -z "$what" ] && what="$(first_match "$log" "s/.*Couldn't find any versions for \"([^\"]+)\" that match \"([^\"]+)\".*/\1@\2/p")"
  [ -z "$what" ] && what="$(first_match "$log" 's/.*YN0082: [^[:alnum:]@]*([^ ]+): No candidates found.*/\1/p')"
  if [ -n "$what" ] || grep -qE 'npm (error|ERR!) code ETARGET|ERR_PNPM_NO_MATCHING_VERSION|YN0082' "$log"; then
    what="${what%.}"
    fail "No published version matches a dependency's range: ${what:-see the error above}." \
      "Change the range in package.json to a version that exists (\`npm view <package> versions\` lists them)," \
      "update $lockfile with \`$fix\`, and push again."
  fi

  what="$(first_match "$log" 's/^npm (error|ERR!) path .*\/node_modules\/(.+)$/\2/p')"
  if [ -z "$what" ] && grep -qE 'npm (error|ERR!) command failed' "$log"; then what="a dependency"; fi
  [ -z "$what" ] && what="$(first_match "$log" 's/^error .*\/node_modules\/([^:]+): Command failed.*/\1/p')"
  [ -z "$what" ] && what="$(first_match "$log" "s/.*YN0009: [^[:alnum:]@]*(.+) couldn't be built successfully.*/\1/p")"
  [ -z "$what" ] && what="$(first_match "$log" 's/.*node_modules\/\.pnpm\/[^ ]*\/node_modules\/([^ ]+) (preinstall|install|postinstall)(\$|:).*Failed.*/\1/p')"
  if [ -n "$what" ]; then
    fail "The install script of a dependency failed: $what." \
      "Its output is above. Native modules compile with node-gyp against Node ${BERTH_NODE_VERSION}'s headers (nothing is downloaded):" \
      "use a version of the package that supports Node ${BERTH_NODE_VERSION%%.*}, or pin engines.node to a Node it supports."
  fi
  return 0
}
