// Serves the prebuilt front end (dist/ui/static) from memory: content types, compression, caching and strict security headers.
import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { extname, join, relative, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import { brotliCompressSync, gzipSync } from 'node:zlib'

/** Where `npm run build` puts the bundle: beside this module once compiled (dist/ui/static). */
export const DEFAULT_STATIC_DIR = fileURLToPath(new URL('./static/', import.meta.url))

/** Only same-origin scripts, styles and calls; no inline code, no framing, nothing from elsewhere. */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ')

/** Sent with every UI response, pages and API alike. */
export function setSecurityHeaders(res: ServerResponse): void {
  res.setHeader('Content-Security-Policy', CONTENT_SECURITY_POLICY)
  res.setHeader('X-Content-Type-Options', 'nosniff')
  res.setHeader('X-Frame-Options', 'DENY')
  res.setHeader('Referrer-Policy', 'no-referrer')
  res.setHeader('Cross-Origin-Opener-Policy', 'same-origin')
  res.setHeader('Cross-Origin-Resource-Policy', 'same-origin')
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json; charset=utf-8',
  '.webmanifest': 'application/manifest+json',
  '.txt': 'text/plain; charset=utf-8',
}
const COMPRESSIBLE = new Set(['.html', '.js', '.css', '.svg', '.json', '.webmanifest', '.txt'])

interface Asset {
  body: Buffer
  gzip?: Buffer
  brotli?: Buffer
  contentType: string
  etag: string
  /** Hashed file names (assets/…) never change: cache them for a year. */
  immutable: boolean
}

export interface StaticFiles {
  /** False when the bundle was not built (dist/ui/static missing). */
  readonly available: boolean
  /** Answers GET/HEAD for `path` (relative to /ui/, '' meaning index.html); false when there is no such file. */
  serve(req: IncomingMessage, res: ServerResponse, path: string): boolean
}

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = join(dir, name)
    return statSync(full).isDirectory() ? walk(full) : [full]
  })
}

export function loadStaticFiles(dir: string = DEFAULT_STATIC_DIR): StaticFiles {
  const assets = new Map<string, Asset>()
  if (existsSync(join(dir, 'index.html'))) {
    for (const file of walk(dir)) {
      const name = relative(dir, file).split(sep).join('/')
      const extension = extname(name)
      const body = readFileSync(file)
      const asset: Asset = {
        body,
        contentType: CONTENT_TYPES[extension] ?? 'application/octet-stream',
        etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`,
        immutable: name.startsWith('assets/'),
      }
      if (COMPRESSIBLE.has(extension) && body.length > 1024) {
        asset.gzip = gzipSync(body, { level: 9 })
        asset.brotli = brotliCompressSync(body)
      }
      assets.set(name, asset)
    }
  }
  return {
    available: assets.size > 0,
    serve(req, res, path) {
      const asset = assets.get(path === '' ? 'index.html' : path)
      if (!asset) return false
      setSecurityHeaders(res)
      res.setHeader('Content-Type', asset.contentType)
      res.setHeader('ETag', asset.etag)
      res.setHeader('Vary', 'Accept-Encoding')
      // The page itself is revalidated every time, so a new build is picked up at once.
      res.setHeader('Cache-Control', asset.immutable ? 'public, max-age=31536000, immutable' : 'no-cache')
      if (req.headers['if-none-match'] === asset.etag) {
        res.statusCode = 304
        res.end()
        return true
      }
      const accepted = String(req.headers['accept-encoding'] ?? '')
      let body = asset.body
      if (asset.brotli && /\bbr\b/.test(accepted)) {
        body = asset.brotli
        res.setHeader('Content-Encoding', 'br')
      } else if (asset.gzip && /\bgzip\b/.test(accepted)) {
        body = asset.gzip
        res.setHeader('Content-Encoding', 'gzip')
      }
      res.setHeader('Content-Length', body.length)
      res.statusCode = 200
      res.end(req.method === 'HEAD' ? undefined : body)
      return true
    },
  }
}
