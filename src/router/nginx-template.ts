/**
 * The router's nginx.conf, an Eta template the templater renders from the store. Only vhost-level
 * facts are in it (apps, custom domains, certificates, router settings), so it changes — and nginx
 * reloads — only when those do. Endpoints are never in it: they live in the `berth_endpoints`
 * shared dict, which the router updates in place through the loopback control server; shared
 * dicts survive reloads. `it.router` carries the ports, the control and log secrets, and `plan`
 * (vhosts.ts), which turns the store's keys into server blocks.
 */
export const NGINX_TEMPLATE = `<%
const r = it.router;
const plan = r.plan(it);
const s = plan.settings;
const httpsSuffix = r.httpsPort === 443 ? '' : ':' + r.httpsPort;
const page = (title, text) => '<!DOCTYPE html><html><head><title>' + title + '</title></head><body style="font-family:sans-serif;margin:4em"><h1>' + title + '</h1><p>' + text + '</p></body></html>';
%>
# Rendered by Berth's router from the store; edits are overwritten.
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
worker_processes 1;
pid nginx.pid;
error_log logs/error.log warn;
events {
  worker_connections <%= s.worker_connections %>;
}
http {
  access_log off;
<% if (r.logFile) { %>
  log_format berth_router <%= r.logFormat %>;
<% } %>
  default_type text/html;
  lua_shared_dict berth_endpoints 8m;
  client_max_body_size <%= s.body_size %>;
  client_body_temp_path tmp/body;
  proxy_temp_path tmp/proxy;
  fastcgi_temp_path tmp/fastcgi;
  uwsgi_temp_path tmp/uwsgi;
  scgi_temp_path tmp/scgi;
  proxy_connect_timeout <%= s.connect_timeout %>;
  proxy_read_timeout <%= s.read_timeout %>;
  proxy_send_timeout <%= s.read_timeout %>;
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
    server_name <%= v.hosts.join(' ') %>;
<% if (v.ssl) { %>
    ssl_certificate "<%= v.ssl.cert %>";
    ssl_certificate_key "<%= v.ssl.key %>";
<% } %>
    set $berth_app "<%= v.app.name %>";
    set $berth_app_id "<%= v.app.id %>";
    set $berth_dyno "";
<% if (r.logFile) { %>
    # Buffered: one write per 64k of lines, not one per request; the router reads the file.
    access_log "<%= r.logFile %>" berth_router buffer=64k flush=200ms;
<% } %>
<% if (v.redirect) { %>
    location / {
      # 308 keeps the method and body; browsers and old clients know 301 for GET.
      if ($request_method ~ ^(GET|HEAD)$) {
        return 301 https://$host<%= httpsSuffix %>$request_uri;
      }
      return 308 https://$host<%= httpsSuffix %>$request_uri;
    }
<% } else { %>
    location / {
      access_by_lua_block {
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
  }
}
`;
