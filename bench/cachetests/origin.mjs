// Starts the suite's origin server (pkg/server/server.mjs) bound to 127.0.0.1 only.
// usage: npm_config_port=PORT npm_config_protocol=http npm_config_pidfile=FILE node origin.mjs
import http from 'http'
const listen = http.Server.prototype.listen
http.Server.prototype.listen = function (port, ...rest) {
  return listen.call(this, port, '127.0.0.1', ...rest)
}
await import('./pkg/server/server.mjs')
