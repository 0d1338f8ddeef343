/**
 * The router's nginx.conf, an Eta template the templater renders from the store. Only vhost-level
 * facts are in it (apps, custom domains, certificates, router settings), so it changes — and nginx
 * reloads — only when those do. Endpoints are never in it: they live in the `berth_endpoints`
 * shared dict, which the router updates in place through the loopback control server; shared
 * dicts survive reloads. So do apps in maintenance mode (`berth_maintenance`, app ids), so a toggle
 * is no reload either. `it.router` carries the ports, the control and log secrets, `plan`
 * (vhosts.ts), which turns the store's keys into server blocks, and `safe` (conf-values.ts), which
 * every store value passes through on its way into this file.
 */
export const NGINX_TEMPLATE = `<%
const r = it.router;
const plan = r.plan(it);
const s = plan.settings;
const httpsSuffix = r.httpsPort === 443 ? '' : ':' + r.httpsPort;
const safe = r.safe;
const page = (title, text) => '<!DOCTYPE html><html><head><title>' + title + '</title></head><body style="font-family:sans-serif;margin:4em"><h1>' + title + '</h1><p>' + text + '</p></body></html>';
const maintenancePage = page('Offline for maintenance', 'This app is down for maintenance right now. Please try again in a little while.');
%>
# Rendered by Berth's router from the store; edits are overwritten.
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
worker_processes 1;
pid nginx.pid;
error_log logs/error.log warn;
events {
  worker_connections <%= safe.setting(s.worker_connections) %>;
}
http {
  access_log off;
<% if (r.logFile) { %>
  log_format berth_router <%= r.logFormat %>;
<% } %>
  default_type text/html;
  lua_shared_dict berth_endpoints 8m;
  lua_shared_dict berth_maintenance 4m;
  client_max_body_size <%= safe.setting(s.body_size) %>;
  client_body_temp_path tmp/body;
  proxy_temp_path tmp/proxy;
  fastcgi_temp_path tmp/fastcgi;
  uwsgi_temp_path tmp/uwsgi;
  scgi_temp_path tmp/scgi;
  proxy_connect_timeout <%= safe.setting(s.connect_timeout) %>;
  proxy_read_timeout <%= safe.setting(s.read_timeout) %>;
  proxy_send_timeout <%= safe.setting(s.read_timeout) %>;
<% if (r.httpsPort) { %>
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_cache shared:berth_tls:10m;
  ssl_session_timeout 1h;
<% } %>
  map $http_upgrade $berth_connection {
    default upgrade;
    '' '';
  }
  # A client's id is kept if it looks like one (Heroku's rule, roughly); otherwise nginx makes one.
  map $http_x_request_id $berth_request_id {
    default $request_id;
    "~^[A-Za-z0-9+/=._:-]{1,200}$" $http_x_request_id;
  }

  upstream berth_dynos {
    server 0.0.0.1;
    balancer_by_lua_block {
      local balancer = require "ngx.balancer"
      local eps = ngx.ctx.berth_eps
      local n = #eps
      local try = ngx.ctx.berth_try
      if not try then
        -- A random start spreads load; on retries, the next endpoint, never the one that failed.
        try = math.random(n)
        if n > 1 then balancer.set_more_tries(math.min(n - 1, 2)) end
      else
        try = try % n + 1
      end
      ngx.ctx.berth_try = try
      -- The dyno behind the endpoint, for the router's log line.
      ngx.var.berth_dyno = ngx.ctx.berth_dynos[try]
      local host, port = eps[try]:match("^(.+):(%d+)$")
      local ok, err = balancer.set_current_peer(host, tonumber(port))
      if not ok then
        ngx.log(ngx.ERR, "berth: cannot use endpoint ", eps[try], ": ", err)
        return ngx.exit(502)
      end
    }
    keepalive 64;
  }

  server {
    listen <%= r.httpPort %> default_server;
    server_name _;
    # \`set\` declares these for the whole config (the log format and the balancer use them) even
    # while no app exists; each app's server sets its own values.
    set $berth_app "";
    set $berth_app_id "";
    set $berth_dyno "";
    # Heroku's router code for an answer the router gives itself without a dyno (H80), for the log.
    set $berth_error "";
    location = /health {
      default_type text/plain;
      return 200 "ok\\n";
    }
    location / {
      return 404 '<%= page('No such app', 'There is no app at this address.') %>';
    }
  }
<% if (r.httpsPort) { %>
  # A TLS handshake for a name no certificate serves is refused, rather than answered with
  # another app's certificate.
  server {
    listen <%= r.httpsPort %> ssl http2 default_server;
    server_name _;
    ssl_reject_handshake on;
    location / {
      return 404 '<%= page('No such app', 'There is no app at this address.') %>';
    }
  }
<% } %>
<% for (const v of plan.servers) { %>
  server {
    listen <%= v.port %><%= v.ssl ? ' ssl http2' : '' %>;
    server_name <%= v.hosts.map(safe.host).join(' ') %>;
<% if (v.ssl) { %>
    ssl_certificate "<%= safe.path(v.ssl.cert) %>";
    ssl_certificate_key "<%= safe.path(v.ssl.key) %>";
<% } %>
    set $berth_app "<%= safe.name(v.app.name) %>";
    set $berth_app_id "<%= safe.id(v.app.id) %>";
    set $berth_dyno "";
    set $berth_error "";
<% if (r.logFile) { %>
    # Buffered: one write per 64k of lines, not one per request; the router reads the file.
    access_log "<%= r.logFile %>" berth_router buffer=64k flush=200ms;
<% } %>
<% if (v.redirect) { %>
    location / {
      # Maintenance first: every hostname of the app answers the page, over plain HTTP too.
      # set_by_lua runs in order with \`if\`, before the redirect's \`return\`.
      set_by_lua_block $berth_maintenance {
        return ngx.shared.berth_maintenance:get(ngx.var.berth_app_id) and "1" or ""
      }
      if ($berth_maintenance) {
        set $berth_error H80;
        add_header Retry-After 60 always;
        return 503 '<%= maintenancePage %>';
      }
      # 308 keeps the method and body; browsers and old clients know 301 for GET.
      if ($request_method ~ ^(GET|HEAD)$) {
        return 301 https://$host<%= httpsSuffix %>$request_uri;
      }
      return 308 https://$host<%= httpsSuffix %>$request_uri;
    }
<% } else { %>
    location / {
      access_by_lua_block {
        -- Looked up per request in a shared dict the router sets: maintenance:on/off is no reload.
        if ngx.shared.berth_maintenance:get(ngx.var.berth_app_id) then
          ngx.var.berth_error = "H80"
          ngx.status = 503
          ngx.header["Content-Type"] = "text/html"
          ngx.header["Retry-After"] = "60"
          ngx.print('<%= maintenancePage %>')
          return ngx.exit(503)
        end
        local value = ngx.shared.berth_endpoints:get(ngx.var.berth_app)
        if not value or value == "" then
          ngx.status = 503
          ngx.header["Content-Type"] = "text/html"
          ngx.header["Retry-After"] = "5"
          ngx.print('<%= page('Application not running', 'This app has no running web dynos. Its owner can start one with ps:scale web=1.') %>')
          return ngx.exit(503)
        end
        -- "host:port|web.1,host:port|web.2"
        local eps, dynos = {}, {}
        for ep, dyno in value:gmatch("([^,|]+)|?([^,]*)") do
          eps[#eps + 1] = ep
          dynos[#dynos + 1] = dyno
        end
        ngx.ctx.berth_eps = eps
        ngx.ctx.berth_dynos = dynos
      }
      proxy_pass http://berth_dynos;
      proxy_http_version 1.1;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Port $server_port;
      proxy_set_header X-Request-Id $berth_request_id;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $berth_connection;
      add_header X-Request-Id $berth_request_id always;
      proxy_next_upstream error timeout;
    }
<% } %>
  }
<% } %>
  # Loopback only: where the router process sets each app's endpoints, without a reload.
  server {
    listen 127.0.0.1:<%= r.controlPort %>;
    location = /endpoints {
      client_body_buffer_size 4m;
      client_max_body_size 4m;
      content_by_lua_block {
        -- Dynos share the host's network: only the router process, which knows this start's
        -- secret, may change where traffic goes.
        if ngx.req.get_headers()["x-berth-control"] ~= "<%= r.controlToken %>" then
          return ngx.exit(403)
        end
        ngx.req.read_body()
        local body = ngx.req.get_body_data() or ""
        local dict = ngx.shared.berth_endpoints
        local seen = {}
        -- One line per app, "name ep1|dyno,ep2|dyno"; a full snapshot: apps missing from it are dropped.
        for line in body:gmatch("[^\\n]+") do
          local app, eps = line:match("^(%S+) ?(.*)$")
          if app then
            seen[app] = true
            dict:set(app, eps)
          end
        end
        for _, app in ipairs(dict:get_keys(0)) do
          if not seen[app] then dict:delete(app) end
        end
        ngx.say("ok")
      }
    }
    location = /maintenance {
      client_body_buffer_size 1m;
      client_max_body_size 1m;
      content_by_lua_block {
        if ngx.req.get_headers()["x-berth-control"] ~= "<%= r.controlToken %>" then
          return ngx.exit(403)
        end
        ngx.req.read_body()
        local body = ngx.req.get_body_data() or ""
        local dict = ngx.shared.berth_maintenance
        local seen = {}
        -- One app id per line: the apps in maintenance mode now; a full snapshot.
        for id in body:gmatch("[^\\n]+") do
          seen[id] = true
        end
        -- Flags no longer wanted go first, so a dict they filled has room for the new ones.
        for _, id in ipairs(dict:get_keys(0)) do
          if not seen[id] then dict:delete(id) end
        end
        for id in pairs(seen) do
          -- safe_set: a full dict must fail the push, never evict another app's flag silently.
          local ok, err = dict:safe_set(id, true)
          if not ok then
            ngx.status = 507
            ngx.say(err)
            return ngx.exit(507)
          end
        end
        ngx.say("ok")
      }
    }
  }
}
`;
