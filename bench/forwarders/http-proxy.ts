// The smallest TLS-terminating forwarder built on http-proxy (the engine on the design card), for the engine comparison.
import { Agent } from 'node:http'
import httpProxy from 'http-proxy'
import { listenTls, settingsFromEnv } from './common.js'

const settings = settingsFromEnv()
const proxy = httpProxy.createProxyServer({
  target: settings.upstream,
  // X-Forwarded-For/-Port/-Proto/-Host: the registry builds its Location URLs from them.
  xfwd: true,
  agent: new Agent({ keepAlive: true, maxSockets: 128 }),
  proxyTimeout: 0,
})
proxy.on('error', (error, _req, res) => {
  if ('writeHead' in res && !res.headersSent) {
    res.writeHead(502, { 'content-type': 'text/plain' })
    res.end(String(error))
  } else {
    res.destroy()
  }
})
listenTls(settings, (req, res) => proxy.web(req, res))
