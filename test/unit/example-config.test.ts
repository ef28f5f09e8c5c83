// config/portier.yaml is the documented default: it must load, and every value in it must equal the built-in default.
import t from 'tap'
import { resolve } from 'node:path'
import { loadConfig } from '../../src/app/config.js'

t.test('config/portier.yaml states exactly the built-in defaults', async (t) => {
  const fromFile = loadConfig({ file: resolve(import.meta.dirname, '../../config/portier.yaml'), env: {} }).config
  const defaults = loadConfig({ env: {} }).config
  t.same(fromFile, defaults)
})
