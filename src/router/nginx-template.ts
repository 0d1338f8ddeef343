/**
 * The router's nginx.conf, an Eta template the templater renders from the store. Only vhost-level
 * facts are in it (apps, custom domains, router settings), so it changes — and nginx reloads —
 * only when those do. Endpoints are never in it: they live in the `berth_endpoints` shared dict,
 * which the router updates in place through the loopback control server; shared dicts survive
 * reloads. `it.router` carries the ports, the platform domain and the control secret.
 */
export const NGINX_TEMPLATE = `<%
const r = it.router;
const setting = (name, fallback) => it.getv('/berth/router/' + name, fallback);
const apps = it.gets('/berth/app-names/').map((kv) => ({ name: kv.key.slice('/berth/app-names/'.length), id: kv.value }));
const nameById = Object.fromEntries(apps.map((a) => [a.id, a.name]));
const customHosts = {};
for (const kv of it.gets('/berth/domains/')) {
  const app = nameById[kv.value];
  if (app) (customHosts[app] = customHosts[app] || []).push(kv.key.slice('/berth/domains/'.length));
}
const page = (title, text) => '<!DOCTYPE html><html><head><title>' + title + '</title></head><body style="font-family:sans-serif;margin:4em"><h1>' + title + '</h1><p>' + text + '</p></body></html>';
%>
# Rendered by Berth's router from the store; edits are overwritten.
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
worker_processes 1;
pid nginx.pid;
error_log logs/error.log warn;
events {
  worker_connections <%= setting('worker_connections', '4096') %>;
}
http {
  access_log off;
  default_type text/html;
  lua_shared_dict berth_endpoints 8m;
  client_max_body_size <%= setting('body_size', '100m') %>;
  client_body_temp_path tmp/body;
  proxy_temp_path tmp/proxy;
  fastcgi_temp_path tmp/fastcgi;
  uwsgi_temp_path tmp/uwsgi;
  scgi_temp_path tmp/scgi;
  proxy_connect_timeout <%= setting('connect_timeout', '5s') %>;
  proxy_read_timeout <%= setting('read_timeout', '30s') %>;
  proxy_send_timeout <%= setting('read_timeout', '30s') %>;
  map $http_upgrade $berth_connection {
    default upgrade;
    '' '';
  }
  map $http_x_request_id $berth_request_id {
    default $http_x_request_id;
    '' $request_id;
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
    location = /health {
      default_type text/plain;
      return 200 "ok\\n";
    }
    location / {
      return 404 '<%= page('No such app', 'There is no app at this address.') %>';
    }
  }
<% for (const app of apps) { %>
  server {
    listen <%= r.httpPort %>;
    server_name <%= [app.name + '.' + r.domain, ...(customHosts[app.name] || [])].join(' ') %>;
    location / {
      set $berth_app "<%= app.name %>";
      access_by_lua_block {
        local value = ngx.shared.berth_endpoints:get(ngx.var.berth_app)
        if not value or value == "" then
          ngx.status = 503
          ngx.header["Content-Type"] = "text/html"
          ngx.header["Retry-After"] = "5"
          ngx.print('<%= page('Application not running', 'This app has no running web dynos. Its owner can start one with ps:scale web=1.') %>')
          return ngx.exit(503)
        end
        local eps = {}
        for ep in value:gmatch("[^,]+") do eps[#eps + 1] = ep end
        ngx.ctx.berth_eps = eps
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
        -- One line per app, "name ep1,ep2"; a full snapshot: apps missing from it are dropped.
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
