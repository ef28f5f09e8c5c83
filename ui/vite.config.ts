// Builds the web UI (ui/) into dist/ui/static, which Portier serves at /ui/. Run through `npm run build`.
import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vite'

const root = fileURLToPath(new URL('.', import.meta.url))

export default defineConfig({
  root,
  base: '/ui/',
  publicDir: 'public',
  logLevel: 'warn',
  build: {
    outDir: fileURLToPath(new URL('../dist/ui/static', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    // Everything is one small same-origin bundle: no preload polyfill (an inline script the CSP would refuse), no inlined assets.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    sourcemap: false,
  },
})
